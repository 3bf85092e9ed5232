"""The settings of the end-to-end LoRA study (``hrp-sim lora``). Imports nothing beyond the core,
so the CLI can show its defaults and validate its flags on a core-only install."""

from __future__ import annotations

import dataclasses
import math

from ..validation import names, non_negative, one_of, positive_int, positive_number, regex
from ..validation import seed as check_seed


def lr_label(lr: float) -> str:
    """A learning rate as text in run names and JSON keys: the shortest text that reads back as
    the same float (``5e-4`` → ``0.0005``; ``1.000001e-4`` keeps every digit), so two different
    rates never share a name."""
    return repr(float(lr))


LORA_TASKS = ("polarity", "bbc")
LORA_INITS = (
    "kaiming",
    "gaussian",
    "pissa",
    "olora",
    "lora-ga",
    "lora-one",
    "eva",
    "corda",
    "hrp",
)
LORA_OPTIMIZERS = ("adamw", "adam", "sgd")
LORA_SCALINGS = ("alpha/r", "alpha/sqrt-r")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """The end-to-end LoRA study (``hrp-sim lora``): every init fine-tunes the same model on the
    same task, seeds paired.

    Attributes:
      task: ``polarity`` or ``bbc`` (``models.tasks``); inits: names from ``LORA_INITS``.
      r, alpha, scaling: LoRA rank and scale ``s = α/r`` (or ``α/√r``).
      preheat_rank, preheat_steps: HRP's p and ``T_p`` (same optimizer, lr and batches as the main
        run; the preheat LoRA's scale is ``α/p``).
      steps, lr, optimizer, weight_decay: the main run (each init; the head trains too).
      lr_grid: if set, every init runs at every learning rate here; the best per init is chosen
        on the validation split and reported on the test split. ``lr`` must be one of them.
      batch_size, max_tokens: training batches (tokens truncated and padded to ``max_tokens``).
      targets: regex over kernel paths (``re.search``) that get adapters.
      seeds, seed: seeds per init (vmapped) and the root seed.
      eval_every: validation accuracy every this many steps on the first 128 validation
        examples, and at the end on all of them.
      grad_batches: batches averaged for LoRA-GA's and LoRA-One's full-weight gradient.
      sigma_examples: training examples for the input second moments (EVA, CorDA, the bridge).
      hessian_iters: power iterations for λ_max of the loss Hessian at init, measured at the
        common learning rate ``lr`` (0: skip).
      target_loss: the training loss whose first crossing is reported (steps to reach it).
      checkpoint, data: base model (default: installed MiniLM) and the task's data.
    """

    task: str = "polarity"
    inits: tuple[str, ...] = LORA_INITS
    r: int = 8
    alpha: float = 16.0
    scaling: str = "alpha/r"
    preheat_rank: int = 32
    preheat_steps: int = 10
    steps: int = 50
    lr: float = 5e-4
    lr_grid: tuple[float, ...] | None = None
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    batch_size: int = 16
    max_tokens: int = 32
    targets: str = "encoder/"
    seeds: int = 5
    seed: int = 0
    eval_every: int = 25
    grad_batches: int = 4
    sigma_examples: int = 256
    hessian_iters: int = 8
    target_loss: float = 0.6
    checkpoint: str | None = None
    data: str | None = None

    def __post_init__(self):
        one_of(self.task, "task", LORA_TASKS, "task")
        inits = names(self.inits, "inits") if self.inits else ()
        if not inits:
            raise ValueError("inits: empty; name at least one of " + ", ".join(LORA_INITS))
        for name in inits:
            one_of(name, "inits", LORA_INITS, "init")
        object.__setattr__(self, "inits", inits)
        for f in ("r", "preheat_rank", "preheat_steps", "steps", "batch_size", "max_tokens"):
            positive_int(getattr(self, f), f)
        for f in ("seeds", "eval_every", "grad_batches", "sigma_examples"):
            positive_int(getattr(self, f), f)
        if self.max_tokens < 3:
            raise ValueError(f"max_tokens: {self.max_tokens} leaves no room for a word; use >= 3")
        if isinstance(self.hessian_iters, bool) or not isinstance(self.hessian_iters, int):
            raise ValueError(f"hessian_iters: {self.hessian_iters!r} must be an integer >= 0")
        non_negative(self.hessian_iters, "hessian_iters")
        if self.preheat_rank < self.r:
            raise ValueError(
                f"preheat_rank: p = {self.preheat_rank} must be >= r = {self.r}; raise "
                "--preheat-rank or lower --r"
            )
        positive_number(self.alpha, "alpha")
        one_of(self.scaling, "scaling", LORA_SCALINGS, "scaling")
        positive_number(self.lr, "lr")
        non_negative(self.weight_decay, "weight_decay")
        positive_number(self.target_loss, "target_loss")
        one_of(self.optimizer, "optimizer", LORA_OPTIMIZERS, "optimizer")
        check_seed(self.seed)
        if self.lr_grid is not None:
            grid = tuple(positive_number(v, "lr_grid") for v in self.lr_grid)
            if not grid:
                raise ValueError("lr_grid: empty; give learning rates such as 1e-4,3e-4,1e-3")
            if not any(math.isclose(self.lr, v, rel_tol=1e-9) for v in grid):
                raise ValueError(
                    f"lr_grid: the common learning rate lr = {self.lr:g} is not in the grid "
                    f"{','.join(f'{v:g}' for v in grid)}; add it, or set --lr to one of them"
                )
            labels = [lr_label(v) for v in grid]
            twice = sorted({t for t in labels if labels.count(t) > 1})
            if twice:
                raise ValueError(
                    f"lr_grid: {', '.join(twice)} given more than once; name each learning rate "
                    "once"
                )
            object.__setattr__(self, "lr_grid", tuple(sorted(grid)))
            # the grid's own value, so that runs are found by exact key
            same = next(v for v in grid if math.isclose(self.lr, v, rel_tol=1e-9))
            object.__setattr__(self, "lr", same)
        regex(self.targets, "targets")

    @property
    def lrs(self) -> tuple[float, ...]:
        """The learning rates every init runs at."""
        return self.lr_grid if self.lr_grid is not None else (self.lr,)

    def scale(self, rank: int) -> float:
        """``s`` of a LoRA of ``rank``: ``α/rank`` or ``α/√rank``."""
        return self.alpha / (rank if self.scaling == "alpha/r" else math.sqrt(rank))
