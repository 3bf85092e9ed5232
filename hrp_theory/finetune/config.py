"""The settings of the end-to-end LoRA study (``hrp-sim lora``). Imports nothing beyond the core,
so the CLI can show its defaults and validate its flags on a core-only install."""

from __future__ import annotations

import dataclasses
import math

from ..validation import (
    MAX_BATCH,
    MAX_SEEDS,
    MAX_STEPS,
    MAX_TOKENS,
    names,
    non_negative,
    one_of,
    positive_int,
    positive_number,
    regex,
)
from ..validation import seed as check_seed


def lr_label(lr: float) -> str:
    """A learning rate as text in run names and JSON keys: the shortest text that reads back as
    the same float (``5e-4`` → ``0.0005``; ``1.000001e-4`` keeps every digit), so two different
    rates never share a name."""
    return repr(float(lr))


LORA_TASKS = ("polarity", "bbc")
#: The most Lanczos steps: the Krylov basis keeps one vector of the trained parameters per step.
MAX_LANCZOS = 1000
#: The peers (PEFT's default, the data-aware inits, HRP) and the end-to-end oracles, which need
#: the task's full fine-tune (``hrp-sim finetune --task TASK``).
PEER_INITS = ("kaiming", "gaussian", "pissa", "olora", "lora-ga", "lora-one", "eva", "corda", "hrp")
ORACLE_INITS = ("aligned-ft", "aligned-ft-sigma")
LORA_INITS = PEER_INITS + ORACLE_INITS
LORA_FORMS = ("classic", "freeze-a")
FORM_TITLE = {
    "classic": "classic LoRA (A and B trained)",
    "freeze-a": "freeze-A (A fixed, B trained)",
}
LORA_OPTIMIZERS = ("adamw", "adam", "sgd")
LORA_SCALINGS = ("alpha/r", "alpha/sqrt-r")
#: A forward pass over a batch, in training-step equivalents (a step is a forward and a backward
#: through the frozen base, which costs about another forward: benchmarks/lora_seeds.py measures
#: ``eval_over_step``).
FORWARD_COST = 0.5


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """The end-to-end LoRA study (``hrp-sim lora``): every init fine-tunes the same model on the
    same task, seeds paired.

    Attributes:
      task: ``polarity`` or ``bbc`` (``models.tasks``); inits: names from ``LORA_INITS``.
      forms: ``classic`` (A and B trained) and/or ``freeze-a`` (A fixed at its init, B and the
        head trained: the setting where the HRP theory is exact).
      r, alpha, scaling: LoRA rank and scale ``s = α/r`` (or ``α/√r``).
      preheat_rank, preheat_steps: HRP's p and ``T_p`` (same form, optimizer, lr and batches as
        the main run; the preheat LoRA's scale is ``α/p``).
      steps, lr, optimizer, weight_decay: the main run (each init; the head trains too).
      lr_grid: if set, every init runs at every learning rate here; the best per init and form is
        chosen on the validation split and reported on the test split. ``lr`` must be one of them.
      batch_size, max_tokens: training batches (tokens truncated and padded to ``max_tokens``).
      targets: regex over kernel paths (``re.search``) that get adapters.
      seeds, seed: seeds per init (vmapped) and the root seed.
      curve_steps: the main-run steps where test accuracy is measured along the run (default: 20,
        50, 80 and 100 % of ``steps``), every one on the same ``curve_examples`` test examples
        (the first of the fixed test split; 0: all of it).
      grad_batches: batches averaged for LoRA-GA's and LoRA-One's full-weight gradient.
      sigma_examples: training examples whose activations EVA, CorDA and the whitening read.
      eva_rho: PEFT's EVA rank redistribution: a layer's rank may reach ``round(ρ·r)``, the total
        stays ``r`` a layer (1: every layer keeps ``r``).
      lanczos_steps: Lanczos steps for the extreme Hessian eigenvalues at init (0: skip), on the
        first ``curvature_seeds`` seeds, the loss averaged over ``curvature_batches`` training
        batches; at the common learning rate.
      target_loss: the training loss whose first crossing is reported (steps to reach it).
      checkpoint, data: base model (default: installed MiniLM) and the task's data.
    """

    task: str = "polarity"
    inits: tuple[str, ...] = PEER_INITS
    forms: tuple[str, ...] = ("classic",)
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
    curve_steps: tuple[int, ...] | None = None
    curve_examples: int = 500
    grad_batches: int = 4
    sigma_examples: int = 256
    eva_rho: float = 2.0
    lanczos_steps: int = 20
    curvature_seeds: int = 2
    curvature_batches: int = 4
    target_loss: float = 0.6
    checkpoint: str | None = None
    data: str | None = None

    def __post_init__(self):
        one_of(self.task, "task", LORA_TASKS, "task")
        for field, allowed in (("inits", LORA_INITS), ("forms", LORA_FORMS)):
            given = names(getattr(self, field), field) if getattr(self, field) else ()
            if not given:
                raise ValueError(f"{field}: empty; name at least one of {', '.join(allowed)}")
            for name in given:
                one_of(name, field, allowed, field[:-1])
            object.__setattr__(self, field, given)
        positive_int(self.r, "r")
        positive_int(self.preheat_rank, "preheat_rank")
        positive_int(self.preheat_steps, "preheat_steps", MAX_STEPS)
        positive_int(self.steps, "steps", MAX_STEPS)
        positive_int(self.batch_size, "batch_size", MAX_BATCH)
        positive_int(self.max_tokens, "max_tokens", MAX_TOKENS)
        positive_int(self.seeds, "seeds", MAX_SEEDS)
        for f in ("grad_batches", "sigma_examples", "curvature_seeds", "curvature_batches"):
            positive_int(getattr(self, f), f, 1 << 20)
        for f in ("curve_examples", "lanczos_steps"):
            if isinstance(getattr(self, f), bool) or not isinstance(getattr(self, f), int):
                raise ValueError(f"{f}: {getattr(self, f)!r} must be an integer >= 0")
            non_negative(getattr(self, f), f)
        if 0 < self.lanczos_steps < 2:
            raise ValueError("lanczos_steps: use 0 (no curvature) or at least 2 steps")
        if self.lanczos_steps > MAX_LANCZOS:
            raise ValueError(
                f"lanczos_steps: {self.lanczos_steps} is above {MAX_LANCZOS}; the Krylov basis "
                "keeps one copy of every trained parameter per step, and 20-100 steps resolve "
                "the extreme eigenvalues"
            )
        if self.max_tokens < 3:
            raise ValueError(f"max_tokens: {self.max_tokens} leaves no room for a word; use >= 3")
        if self.preheat_rank < self.r:
            raise ValueError(
                f"preheat_rank: p = {self.preheat_rank} must be >= r = {self.r}; raise "
                "--preheat-rank or lower --r"
            )
        positive_number(self.alpha, "alpha")
        if not self.eva_rho >= 1 or not math.isfinite(self.eva_rho):
            raise ValueError(f"eva_rho: {self.eva_rho!r} must be a number >= 1 (PEFT's rho)")
        one_of(self.scaling, "scaling", LORA_SCALINGS, "scaling")
        positive_number(self.lr, "lr")
        non_negative(self.weight_decay, "weight_decay")
        positive_number(self.target_loss, "target_loss")
        one_of(self.optimizer, "optimizer", LORA_OPTIMIZERS, "optimizer")
        check_seed(self.seed)
        self._check_grid()
        self._check_curve()
        if not regex(self.targets, "targets").strip():
            raise ValueError(
                "targets: empty; an empty regex would put adapters on every kernel, the pooler's "
                "included; give one such as 'encoder/' (the default)"
            )

    def _check_grid(self) -> None:
        if self.lr_grid is None:
            return
        grid = tuple(positive_number(v, "lr_grid") for v in self.lr_grid)
        if not grid:
            raise ValueError("lr_grid: empty; give learning rates such as 1e-4,3e-4,1e-3")
        labels = [lr_label(v) for v in grid]
        twice = sorted({t for t in labels if labels.count(t) > 1})
        if twice:
            raise ValueError(
                f"lr_grid: {', '.join(twice)} given more than once; name each learning rate once"
            )
        same = [v for v in grid if math.isclose(self.lr, v, rel_tol=1e-9)]
        if not same:
            raise ValueError(
                f"lr_grid: the common learning rate lr = {self.lr:g} is not in the grid "
                f"{','.join(f'{v:g}' for v in grid)}; add it, or set --lr to one of them"
            )
        object.__setattr__(self, "lr_grid", tuple(sorted(grid)))
        object.__setattr__(self, "lr", same[0])  # the grid's own value: runs found by exact key

    def _check_curve(self) -> None:
        steps = self.curve_steps
        if steps is None:
            steps = tuple(sorted({max(1, round(self.steps * f)) for f in (0.2, 0.5, 0.8, 1.0)}))
        steps = tuple(int(positive_int(k, "curve_steps")) for k in steps)
        if max(steps) > self.steps:
            raise ValueError(
                f"curve_steps: {max(steps)} is past the run's {self.steps} steps; list steps "
                f"from 1 to {self.steps}"
            )
        if len(set(steps)) != len(steps):
            raise ValueError("curve_steps: a step is listed twice; list each once")
        object.__setattr__(self, "curve_steps", tuple(sorted(steps)))

    @property
    def lrs(self) -> tuple[float, ...]:
        """The learning rates every init runs at."""
        return self.lr_grid if self.lr_grid is not None else (self.lr,)

    def scale(self, rank: int) -> float:
        """``s`` of a LoRA of ``rank``: ``α/rank`` or ``α/√rank``."""
        return self.alpha / (rank if self.scaling == "alpha/r" else math.sqrt(rank))

    def extra_budget(self, init: str) -> float:
        """What an init spends before its main run, in training-step equivalents (one step: a
        forward and a backward over ``batch_size`` examples): HRP's preheat steps, LoRA-GA's and
        LoRA-One's gradient batches, EVA's and CorDA's activation passes (``FORWARD_COST`` a
        batch). The oracles' full fine-tune is not counted: they are references, not methods."""
        if init == "hrp":
            return float(self.preheat_steps)
        if init in ("lora-ga", "lora-one"):
            return float(self.grad_batches)
        if init in ("eva", "corda"):
            return FORWARD_COST * self.sigma_examples / self.batch_size
        return 0.0

    def equal_total_steps(self, init: str) -> int:
        """Main steps that bring ``init`` to the same total budget as a plain init's ``steps``
        (``steps − ⌈extra⌉``; 0 when the budget does not allow any)."""
        return max(0, self.steps - math.ceil(self.extra_budget(init) - 1e-9))
