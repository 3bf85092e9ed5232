"""The settings of the per-layer study (``hrp-sim real``). Imports nothing beyond the core, so
the CLI can show its defaults and validate its flags on a core-only install."""

from __future__ import annotations

import dataclasses
import math
import re

from ..dynamics import check_optimizer
from ..inits import check_inits
from ..spectra import spectrum_values
from ..validation import (
    in_interval,
    names,
    non_negative,
    one_of,
    optional_positive_int,
    positive_int,
    positive_number,
)
from ..validation import seed as check_seed

DEFAULT_INITS = ("kaiming", "aligned", "aligned-sigma", "hrp", "hrp-sigma", "pissa", "lora-one")
FORMS = ("freeze-a", "classic")
SIGMAS = ("real", "identity")
SYNTHETIC = "synthetic:"


@dataclasses.dataclass(frozen=True)
class RealConfig:
    """A per-layer study.

    Attributes:
      checkpoint: the base model (any format ``checkpoints.load`` reads); None: installed MiniLM.
      layers: regular expression selecting kernel paths (``re.search``).
      delta: ``"finetuned"`` (``hrp-sim finetune``'s folder), a fine-tuned checkpoint path, or
        ``"synthetic:SPECTRUM"`` (a ΔW with that spectrum and Haar singular vectors per layer).
      sigma: ``"real"`` (``Σ`` from the base model's activations on the polarity text) or
        ``"identity"`` (whitened theory on the same ``W0`` and ``ΔW``).
      r, p: LoRA rank and HRP preheat rank; inits: names from ``inits.INITS``.
      seeds, seed: number of seeds (random draws per layer) and the root seed.
      steps, lr, optimizer: the main runs (each init is trained freeze-A and classic).
      preheat_steps: HRP's ``T_p`` (classic preheat, same optimizer and lr).
      tokens: tokens per covariance estimate (default ``4·max(in)`` over the layers, the minimum).
      data: the polarity CSV (default: ``text.data_dir()``).
    """

    checkpoint: str | None = None
    layers: str = "encoder/"
    delta: str = "finetuned"
    sigma: str = "real"
    r: int = 8
    p: int = 32
    inits: tuple[str, ...] = DEFAULT_INITS
    seeds: int = 8
    seed: int = 0
    steps: int = 200
    lr: float = 0.2
    optimizer: str = "gd"
    preheat_steps: int = 20
    tokens: int | None = None
    data: str | None = None

    def __post_init__(self):
        for f in ("r", "p", "seeds", "steps", "preheat_steps"):
            positive_int(getattr(self, f), f)
        optional_positive_int(self.tokens, "tokens")
        if self.p < self.r:
            raise ValueError(f"p: preheat rank {self.p} must be >= r = {self.r}")
        positive_number(self.lr, "lr")
        one_of(self.sigma, "sigma", SIGMAS)
        check_optimizer(self.optimizer)
        check_seed(self.seed)
        try:
            re.compile(self.layers)
        except re.error as e:
            raise ValueError(
                f"layers: {self.layers!r} is not a valid regular expression ({e})"
            ) from None
        # names only here; lora-ga's 2r <= min(out, in) is checked per layer in load_layers
        object.__setattr__(self, "inits", check_inits(self.inits, self.r, 2 * self.r))
        if self.synthetic_spectrum is not None:  # its syntax; its rank is checked per layer
            spectrum_values(self.synthetic_spectrum, 4096, field="delta")

    @property
    def synthetic_spectrum(self) -> str | None:
        """The spectrum of a synthetic ΔW (``--delta synthetic:SPECTRUM``), else None."""
        return self.delta[len(SYNTHETIC) :] if self.delta.startswith(SYNTHETIC) else None


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The recipe (docs/real-models.md: about 82 % held-out accuracy in about 3 minutes)."""

    steps: int = 150
    batch_size: int = 32
    max_length: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    held_out: float = 0.2
    train_limit: int | None = None  # use only the first k training sentences (smoke runs)
    seed: int = 0

    def __post_init__(self):
        for f in ("steps", "batch_size", "max_length"):
            positive_int(getattr(self, f), f)
        optional_positive_int(self.train_limit, "train_limit")
        positive_number(self.lr, "lr")
        non_negative(self.weight_decay, "weight_decay")
        if not in_interval(self.held_out, "held_out", 0.0, 1.0, open_hi=True) > 0:
            raise ValueError(f"held_out: {self.held_out} must lie in (0, 1)")
        check_seed(self.seed)


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
      task: ``polarity`` or ``bbc`` (``real.tasks``); inits: names from ``LORA_INITS``.
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
        try:
            re.compile(self.targets)
        except re.error as e:
            raise ValueError(
                f"targets: {self.targets!r} is not a valid regular expression ({e})"
            ) from None

    @property
    def lrs(self) -> tuple[float, ...]:
        """The learning rates every init runs at."""
        return self.lr_grid if self.lr_grid is not None else (self.lr,)

    def scale(self, rank: int) -> float:
        """``s`` of a LoRA of ``rank``: ``α/rank`` or ``α/√rank``."""
        return self.alpha / (rank if self.scaling == "alpha/r" else math.sqrt(rank))
