"""One experiment: every init of a config on the same problem per seed (paired), over many seeds.

``ExperimentConfig`` → ``split_config`` (the static view that keys the compilation, and the
traced numbers) → ``simulate_seed`` (one seed: problem, draws, every init trained and measured)
→ ``seeds.map_seeds`` (chunks, devices, interruption, streaming) → ``ExperimentResult``.
Shape- and branch-defining settings are static; every float (learning rates, scales, spectra)
is traced, so a sweep over them compiles once.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import devices as dev
from ._fields import static_view, traced
from .bases import BASES, reduced_obstacles, resolve_basis, spectral_obstacles
from .dynamics import TrainSpec, check_optimizer, make_optimizer, train
from .inits import (
    NEEDS_W0,
    PREHEATED,
    RANDOM_INITS,
    InitHyper,
    InitStatic,
    check_inits,
    draw,
    families_needed,
    reference_init,
    start,
)
from .lora import LoraSpec
from .losses import population_loss
from .metrics import direction_metrics, time_to_excess
from .preheat import check_preheat
from .problems import Basis, ProblemArrays, ProblemSpec, build_problem, optimal_loss, problem_arrays
from .seeds import map_seeds
from .spectra import parse_sigma, sigma_eigenvalues, spectrum_values
from .stats import diverged, resolution
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
      chunk_size: seeds per jitted call (default: ≤ 64 per device, ≤ 1024 in the reduced
        basis, evenly split).
      batch_size: seeds vmapped together on one device (default on CPU 1, 8 in the reduced
        basis; the device's share of the chunk on an accelerator).
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
        if self.preheats:
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


@dataclasses.dataclass(frozen=True)
class SeedStatic:
    """What shapes a seed's program: the config's static view and the basis it runs in."""

    config: ExperimentConfig
    basis: Basis


class Hyper(NamedTuple):
    """The traced numbers of a config."""

    arrays: ProblemArrays
    init: InitHyper


def split_config(config: ExperimentConfig) -> tuple[SeedStatic, Hyper]:
    """The static part of a config (hashable: its static view, whose traced fields hold
    ``TRACED`` (see ``_fields``), and its basis) and its traced numbers."""
    dtype = jnp.result_type(float)
    lr = config.train.learning_rate
    lr_p = config.hrp.lr if config.hrp.lr is not None else lr
    std = config.init_std if config.init_std is not None else 1.0 / math.sqrt(3 * config.problem.n)
    f = lambda x: jnp.asarray(x, dtype)
    hyper = Hyper(
        arrays=problem_arrays(config.problem, dtype),
        init=InitHyper(
            s=f(config.lora.scale()),
            s_p=f(config.lora.scale(config.preheat_rank)),
            std=f(std),
            lr=f(lr),
            lr_p=f(lr_p),
            momentum=f(config.train.momentum),
            weight_decay=f(config.train.weight_decay),
        ),
    )
    return SeedStatic(static_view(config), resolve_basis(config)), hyper


def init_static(cfg: ExperimentConfig, basis: Basis = Basis()) -> InitStatic:
    """The inits' static settings of a config (or of its static view) in ``basis``."""
    reduced = basis.kind == "reduced"
    return InitStatic(
        dims=(cfg.problem.m, cfg.problem.n) if reduced else None,
        rank=basis.rank if reduced else 0,
        r=cfg.lora.r,
        form=cfg.lora.form,
        base=cfg.base,
        p=cfg.preheat_rank if cfg.preheats else cfg.lora.r,
        preheat_form=cfg.hrp.form,
        preheat_steps=cfg.hrp.steps,
        preheat_optimizer=cfg.hrp.optimizer or cfg.train.optimizer,
    )


def simulate_seed(key: jax.Array, static: SeedStatic, hyper: Hyper) -> dict:
    """All inits of one seed on the same problem. Returns ``{name: {metric: array}}`` plus
    ``optimal_loss``."""
    cfg, basis = static.config, static.basis
    r, form = cfg.lora.r, cfg.lora.form
    hy = hyper.init
    k_problem, k_init = jax.random.split(key)
    problem = build_problem(
        k_problem,
        cfg.problem,
        hyper.arrays,
        with_w0=any(i in NEEDS_W0 for i in cfg.inits),
        basis=basis,
    )
    L_opt = optimal_loss(problem, r)
    st = init_static(cfg, basis)
    draws = draw(k_init, problem, st, hy, families_needed(cfg.inits, cfg.base))
    opt = make_optimizer(cfg.train.optimizer, hy.lr, hy.momentum, hy.weight_decay)
    out: dict[str, Any] = {"optimal_loss": L_opt}
    for name in cfg.inits:
        params, obj = start(name, problem, st, hy, draws)
        snap = cfg.same_total_step if name in PREHEATED else None
        res = train(
            params,
            obj,
            hy.s,
            form=form,
            opt=opt,
            steps=cfg.train.steps,
            record_every=cfg.train.every,
            snapshot_step=snap,
        )
        begin = direction_metrics(params, problem, r, form)
        end = direction_metrics(res.params, problem, r, form)
        final = res.curves["loss"][-1]
        rec = {
            "loss_curve": res.curves["loss"],
            "final_loss": final,
            "excess_loss": final - L_opt,
            "angles_init_deg": begin["angles_deg"],
            "angles_final_deg": end["angles_deg"],
            "captured_energy_init": begin["captured_energy"],
            "captured_energy_final": end["captured_energy"],
        }
        if "train_loss" in res.curves:
            rec["train_loss_curve"] = res.curves["train_loss"]
        if snap is not None:
            same = population_loss(res.snapshot, obj, hy.s)
            rec["final_loss_same_total"] = same
            rec["excess_loss_same_total"] = same - L_opt
        out[name] = rec
    return out


@dataclasses.dataclass
class ExperimentResult:
    """Per-seed results on the host: ``per_seed[name][metric]`` is an array ``(seeds, …)``, raw
    (``stream_view`` applies the divergence rule).

    A streamed run (``run_experiment(..., stream=True)``) keeps no per-seed arrays:
    ``per_seed`` and ``optimal_loss`` are None and ``moments[name][metric]`` holds
    ``stats.Moments`` of ``stream_view``'s quantities."""

    config: ExperimentConfig
    per_seed: dict | None
    optimal_loss: np.ndarray | None
    n_done: int
    interrupted: bool = False
    moments: dict | None = None

    def view(self) -> dict:
        """Per init, the quantities the statistics are taken of (``stream_view``: the divergence
        rule applied); for a streamed run, their streaming moments."""
        if self.per_seed is None:
            return self.moments or {}
        return stream_view(self.config)({**self.per_seed, "optimal_loss": self.optimal_loss})


#: Per-seed outcomes of training: left out of the statistics for a diverged seed. (The
#: init-time metrics are kept: they are fixed before training.)
OUTCOMES = (
    "loss_curve",
    "train_loss_curve",
    "final_loss",
    "excess_loss",
    "angles_final_deg",
    "captured_energy_final",
    "final_loss_same_total",
    "excess_loss_same_total",
)


def stream_view(config: ExperimentConfig):
    """The per-seed quantities the statistics are taken of: the divergence rule applied
    (``stats.diverged``: a diverged seed's outcomes become NaN, so they are counted and left out),
    the excess-loss curve, the paired excess difference against the reference init, and 0/1
    indicators for divergence and for reaching ``eps``. Works on a whole run or on one chunk."""
    ref = reference_init(config.inits)
    steps = config.steps_axis()

    def view(out: dict) -> dict:
        opt = np.asarray(out["optimal_loss"])
        v: dict[str, Any] = {"optimal_loss": opt}
        for name in config.inits:
            d = {k: np.asarray(x, np.float64) for k, x in out[name].items()}
            bad = diverged(d["loss_curve"])
            for k in OUTCOMES:
                if k in d:
                    d[k] = np.where(bad.reshape((-1,) + (1,) * (d[k].ndim - 1)), np.nan, d[k])
            excess_curve = d["loss_curve"] - opt[:, None]
            d.update(
                excess_curve=excess_curve,
                diverged=bad.astype(float),
                reached_eps=np.isfinite(time_to_excess(excess_curve, steps, config.eps)).astype(
                    float
                ),
            )
            v[name] = d
        for name in config.inits:
            if name != ref:
                v[name]["excess_minus_ref"] = v[name]["excess_loss"] - v[ref]["excess_loss"]
        return v

    return view


def bytes_per_seed(config: ExperimentConfig) -> float:
    """Rough peak memory of one seed in flight: the matrices of its problem (dense: Haar
    factors, M, C, W0, Σ and its roots, an SVD of MΣ^{1/2}; spectral: M as an m×n array;
    reduced: a (k + p)-sized one) and every init's factors."""
    p, r = config.problem, config.lora.r
    basis = resolve_basis(config)
    m, n = (basis.rows, basis.cols) if basis.kind == "reduced" else (p.m, p.n)
    item = 8 if jnp.result_type(float) == jnp.float64 else 4
    if basis.kind == "dense":
        dense = 2 * m * m + 2 * n * n + 6 * m * n
        if not p.whitened:
            dense += 4 * n * n
        if p.n_samples is not None:
            dense += p.n_samples * (m + n)
    else:
        dense = m * n
    factors = 4 * (m + n) * max(r, config.preheat_rank) * len(config.inits)
    return float(item * (dense + factors))


def result_bytes_per_seed(config: ExperimentConfig) -> float:
    """Host memory of one seed's per-seed arrays (curves, scalars, angles) in float64."""
    per_init = 2 * (len(config.steps_axis()) + 8 + 2 * config.lora.r)
    return 8.0 * (1 + per_init * len(config.inits))


def run_experiment(
    config: ExperimentConfig, progress: bool = True, stream: bool = False
) -> ExperimentResult:
    """Run every seed of ``config``; an interrupt (Ctrl-C) keeps the chunks already finished.

    ``stream=True`` keeps streaming moments instead of per-seed arrays (bounded memory for any
    number of seeds; medians and quantiles are then not available)."""
    check_resolution(config.eps, config.problem)
    n_dev = dev.local_devices(config.devices)
    static, hyper = split_config(config)
    small = dev.is_small(static.basis)
    chunk = dev.chunk_length(config.seeds, config.chunk_size, n_dev, small)
    dev.check_memory(
        bytes_per_seed(config),
        dev.vmap_batch(config.batch_size, chunk // n_dev, small),
        "lower m and n, or --batch-size; with Σ = I and Gaussian factors the "
        "spectral or reduced basis (--basis auto) needs no m×m or n×n matrix",
    )
    if not stream:  # the per-seed arrays come back to the host
        dev.check_memory(
            result_bytes_per_seed(config),
            config.seeds,
            "lower --seeds, or keep streaming moments instead of per-seed arrays "
            "(--stream, run_experiment(..., stream=True))",
            host=True,
        )
    res = map_seeds(
        simulate_seed,
        static,
        hyper,
        seeds=config.seeds,
        seed=config.seed,
        chunk_size=config.chunk_size,
        batch_size=config.batch_size,
        devices=config.devices,
        progress=progress,
        reduce=stream_view(config) if stream else None,
        small=small,
    )
    if stream:
        return ExperimentResult(
            config=config,
            per_seed=None,
            optimal_loss=None,
            n_done=res.n_done,
            interrupted=res.interrupted,
            moments=res.out,
        )
    merged = dict(res.out)
    opt = merged.pop("optimal_loss")
    return ExperimentResult(
        config=config,
        per_seed=merged,
        optimal_loss=opt,
        n_done=res.n_done,
        interrupted=res.interrupted,
    )


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
