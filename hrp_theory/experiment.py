"""One experiment: every init of a config on the same problem per seed (paired), over many seeds.

``ExperimentConfig`` (``config``) → ``simulate.split_config`` (the static view that keys the
compilation, and the traced numbers) → ``simulate.simulate_seed`` (one seed: problem, draws, every
init trained and measured) → ``seeds.map_seeds`` (chunks, devices, interruption, streaming) →
``ExperimentResult``. Shape- and branch-defining settings are static; every float (learning
rates, scales, spectra) is traced, so a sweep over them compiles once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from . import devices as dev
from .bases import resolve_basis
from .config import ExperimentConfig, HrpSpec, check_resolution
from .inits import (
    reference_init,
)
from .metrics import time_to_excess
from .seeds import map_seeds
from .simulate import simulate_seed, split_config
from .stats import diverged

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "HrpSpec",
    "check_resolution",
    "preflight",
    "run_experiment",
    "stream_view",
]


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


def preflight(config: ExperimentConfig, stream: bool = False):
    """Every check a run makes before its first seed (the time-to-ε level's precision, device
    and host memory); ``ValueError`` naming the fix. Returns ``split_config(config)``. A sweep
    calls it for every point before it runs any."""
    check_resolution(config.eps, config.problem)
    static, hyper = split_config(config)
    samples = config.problem.n_samples is not None
    dev.check_memory(
        bytes_per_seed(config),
        _plan(config, static).batch,
        ("lower --samples (the finite-sample data dominate), " if samples else "")
        + "lower m and n, or --batch-size; with Σ = I and Gaussian factors the "
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
    return static, hyper


def _width(config: ExperimentConfig, static) -> int | None:
    return dev.width(static.basis, config.problem.m, config.problem.n)


def _extent(config: ExperimentConfig) -> int:
    return max(config.problem.m, config.problem.n)


def _plan(config: ExperimentConfig, static) -> dev.Plan:
    return dev.plan(
        config.seeds, config.chunk_size, config.batch_size, config.devices, _width(config, static)
    )


def layout_plan(config: ExperimentConfig) -> dev.Plan:
    """The ``devices.Plan`` ``run_experiment`` lays the seeds of ``config`` out by."""
    return _plan(config, split_config(config)[0])


def seed_plan(config: ExperimentConfig) -> str:
    """How ``run_experiment`` lays out the seeds of ``config`` (``devices.plan``), in one line
    (``hrp-sim compare --verbose``)."""
    import jax

    static = split_config(config)[0]
    basis, width = static.basis, _width(config, static)
    n_dev, chunk, batch, last = _plan(config, static)
    dims = f" of {basis.rows}×{basis.cols}" if basis.kind == "reduced" else ""
    no_ynn = dev.compiler_options(width, _extent(config)) is not None
    return (
        f"seeds: {config.seeds} on {n_dev} {jax.default_backend()} device(s), chunks of {chunk}, "
        f"vmapped batches of {batch}, {'seed-minor' if last else 'seed-major'} layout "
        f"({basis.kind} basis{dims}{': a small program' if dev.is_small(width) else ''}"
        f"{'; compiled without YNNPACK fusion' if no_ynn else ''})"
    )


def run_experiment(
    config: ExperimentConfig, progress: bool = True, stream: bool = False
) -> ExperimentResult:
    """Run every seed of ``config``; an interrupt (Ctrl-C) keeps the chunks already finished.

    ``stream=True`` keeps streaming moments instead of per-seed arrays (bounded memory for any
    number of seeds; medians and quantiles are then not available)."""
    static, hyper = preflight(config, stream)
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
        width=_width(config, static),
        extent=_extent(config),
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
