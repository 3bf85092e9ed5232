"""The settings of the per-layer study (``hrp-sim real``) and of the full fine-tune that gives
its ``ΔW`` (``hrp-sim finetune``). Imports nothing beyond the core, so the CLI can show their
defaults and validate its flags on a core-only install."""

from __future__ import annotations

import dataclasses

from ..dynamics import check_optimizer
from ..inits import check_inits
from ..spectra import spectrum_values
from ..validation import (
    MAX_BATCH,
    MAX_SEEDS,
    MAX_STEPS,
    MAX_TOKENS,
    non_negative,
    one_of,
    optional_positive_int,
    positive_int,
    positive_number,
    regex,
)
from ..validation import seed as check_seed

DEFAULT_INITS = ("kaiming", "aligned", "aligned-sigma", "hrp", "hrp-sigma", "pissa", "lora-one")
FORMS = ("freeze-a", "classic")
SIGMAS = ("real", "identity")
SYNTHETIC = "synthetic:"
FINETUNE_TASKS = ("polarity", "bbc")


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
        for f in ("r", "p"):
            positive_int(getattr(self, f), f)
        positive_int(self.seeds, "seeds", MAX_SEEDS)
        positive_int(self.steps, "steps", MAX_STEPS)
        positive_int(self.preheat_steps, "preheat_steps", MAX_STEPS)
        optional_positive_int(self.tokens, "tokens", 1 << 24)
        if self.p < self.r:
            raise ValueError(f"p: preheat rank {self.p} must be >= r = {self.r}")
        positive_number(self.lr, "lr")
        one_of(self.sigma, "sigma", SIGMAS)
        check_optimizer(self.optimizer)
        check_seed(self.seed)
        regex(self.layers, "layers")
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
    """The full fine-tune's recipe (docs/real-models.md). It trains on the task's fixed training
    split (``models.tasks``) and reports accuracy on its test split, the split the end-to-end
    study reports on: no test example is ever trained on, by either."""

    task: str = "polarity"
    steps: int = 150
    batch_size: int = 32
    max_length: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    train_limit: int | None = None  # use only the first k training sentences (smoke runs)
    seed: int = 0

    def __post_init__(self):
        one_of(self.task, "task", FINETUNE_TASKS, "task")
        positive_int(self.steps, "steps", MAX_STEPS)
        positive_int(self.batch_size, "batch_size", MAX_BATCH)
        positive_int(self.max_length, "max_length", MAX_TOKENS)
        optional_positive_int(self.train_limit, "train_limit")
        positive_number(self.lr, "lr")
        non_negative(self.weight_decay, "weight_decay")
        check_seed(self.seed)
