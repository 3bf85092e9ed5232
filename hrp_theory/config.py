"""One experiment's settings, validated: ``ExperimentConfig`` (problem, LoRA, training, HRP's
preheat, inits, seeds, basis) and ``HrpSpec``. Every bad value is a ``ValueError`` naming the
field and the fix, raised when the config is made, before anything runs."""

from __future__ import annotations

import dataclasses
import warnings

import jax.numpy as jnp
import numpy as np

from ._fields import traced
from .bases import BASES, reduced_obstacles, resolve_basis, spectral_obstacles
from .dynamics import TrainSpec, check_optimizer
from .factors import LoraSpec
from .inits import (
    PREHEATED,
    RANDOM_INITS,
    check_inits,
)
from .preheat import check_preheat
from .problems import ProblemSpec
from .spectra import parse_sigma, sigma_eigenvalues, spectrum_values
from .stats import resolution
from .validation import (
    MAX_SEEDS,
    one_of,
    optional_positive_int,
    optional_positive_number,
    positive_int,
    positive_number,
)
from .validation import seed as check_seed


@dataclasses.dataclass(frozen=True)
class HrpSpec:
    """HRP's preheat. ``rank`` p defaults to ``min(4r, min(m, n))``; ``optimizer`` and ``lr``
    default to the main run's; ``steps`` is ``T_p`` or ``"converged"`` (freeze-a only)."""

    rank: int | None = None
    steps: int | str = 20
    form: str = "classic"
    optimizer: str | None = None
    lr: float | None = traced(None)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one ``compare`` run needs. Validated on construction (``ValueError``); building
    one does not start JAX.

    Attributes:
      problem, lora, train, hrp: the parts (see their classes).
      inits: names from ``inits.INITS``.
      base: random family HRP's ``A_p`` and the direction scale ``c`` come from.
      init_std: Gaussian entry std (default ``1/√(3n)``, Kaiming's).
      seeds, seed: number of seeds and the root seed (an integer in ``[0, 2⁶⁴)``).
      chunk_size: seeds per jitted call (default: ≤ 64 per device, ≤ 1024 for a small
        program, ``devices.is_small``: the spectral or reduced basis at most 256 wide; evenly
        split).
      batch_size: seeds vmapped together on one device (default on CPU 1, 64 for a small
        program; the device's share of the chunk on an accelerator).
      devices: local devices the seed axis is sharded over (default: all of the default
        backend's, resolved when the run starts).
      basis: ``auto`` (the reduced basis where it is exact, else the spectral one where that
        is, else dense), ``dense``, ``spectral`` or ``reduced`` (forced: refused where
        impossible, a loud warning where only inexact); see ``spectral_obstacles`` and
        ``reduced_obstacles``.
      eps: excess-loss level for the time-to-ε metric.
    """

    problem: ProblemSpec = ProblemSpec()
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    hrp: HrpSpec = HrpSpec()
    inits: tuple[str, ...] = ("kaiming", "aligned", "hrp")
    base: str = "kaiming"
    init_std: float | None = traced(None)
    seeds: int = traced(100)
    seed: int = traced(0)
    chunk_size: int | None = traced(None)
    batch_size: int | None = traced(None)
    devices: int | None = traced(None)
    basis: str = "auto"
    eps: float = traced(1e-3)

    def __post_init__(self):
        k, r = self.problem.k, self.lora.r
        if r > k:
            raise ValueError(f"r: {r} exceeds min(m, n) = {k}; choose r <= {k}")
        object.__setattr__(self, "inits", check_inits(self.inits, r, k))
        one_of(self.base, "base", RANDOM_INITS, "random family")
        # HRP's settings are checked whether or not an init preheats: a flag given with a bad
        # value is an error even where it would go unused
        check_preheat(self.preheat_rank, r, self.hrp.form, self.hrp.steps, k)
        if self.hrp.optimizer is not None:
            check_optimizer(self.hrp.optimizer, "preheat_optimizer")
        optional_positive_number(self.hrp.lr, "preheat_lr")
        optional_positive_number(self.init_std, "init_std")
        positive_int(self.seeds, "seeds", MAX_SEEDS)
        check_seed(self.seed)
        optional_positive_int(self.chunk_size, "chunk_size")
        optional_positive_int(self.batch_size, "batch_size")
        optional_positive_int(self.devices, "devices")
        positive_number(self.eps, "eps")
        one_of(self.basis, "basis", BASES)
        if self.basis in ("spectral", "reduced"):
            obstacles = spectral_obstacles if self.basis == "spectral" else reduced_obstacles
            impossible, inexact = obstacles(self)
            if impossible:
                raise ValueError(
                    f"basis: the {self.basis} basis cannot run this config: "
                    + "; ".join(impossible)
                    + ". Use --basis dense (or auto)"
                )
            if inexact:
                warnings.warn(
                    f"basis={self.basis} is NOT exact here: "
                    + "; ".join(inexact)
                    + ". Results are then a different experiment from the dense one; "
                    "use --basis auto to run dense",
                    stacklevel=3,
                )

    @property
    def spectral(self) -> bool:
        """Whether seeds run in ``M``'s singular basis (spectral or reduced)."""
        return resolve_basis(self).kind != "dense"

    @property
    def preheats(self) -> bool:
        """Whether an init of this config runs the HRP preheat."""
        return any(i in PREHEATED for i in self.inits)

    @property
    def preheat_rank(self) -> int:
        return self.hrp.rank if self.hrp.rank is not None else min(4 * self.lora.r, self.problem.k)

    @property
    def same_total_step(self) -> int | None:
        """Main-run step at which HRP has spent the same total budget (preheat counted)."""
        if not self.preheats or not isinstance(self.hrp.steps, int):  # "converged"
            return None
        return max(self.train.steps - self.hrp.steps, 0)

    def steps_axis(self) -> np.ndarray:
        return np.arange(0, self.train.steps + 1, self.train.every)


def check_resolution(eps: float, spec: ProblemSpec) -> None:
    """The time-to-ε level must be resolvable in the working precision: an excess loss below
    ``10·eps_dtype·½‖M‖²`` is rounding noise (``stats.resolution``)."""
    dtype = "float64" if jnp.result_type(float) == jnp.float64 else "float32"
    floor = resolution(
        dtype,
        0.5
        * float(
            (spectrum_values(spec.spectrum, spec.k, spec.rank, spec.scale) ** 2).sum()
            * sigma_eigenvalues(parse_sigma(spec.sigma), spec.n).max()
        ),
    )
    if eps < floor:
        raise ValueError(
            f"eps: {eps:g} is below the {dtype} resolution of the excess loss "
            f"(≈ {floor:.2g} at this loss scale); raise eps"
            + ("" if dtype == "float64" else " or add --x64 (float64)")
        )
