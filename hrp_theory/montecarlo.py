"""Monte Carlo over seeds: every init on the same problem per seed (paired), jitted and chunked.

Seed ``i`` uses ``fold_in(root, i)``, so its result does not depend on how many seeds run, on the
chunk size, on the number of devices or on jit. Seeds run in chunks of ``chunk_size`` (one jitted
call each, a tqdm bar over chunks); inside a chunk ``lax.map(batch_size=…)`` vmaps ``batch_size``
seeds at a time. With several devices the chunk's seed axis is sharded over a ``("seeds",)`` mesh
(``NamedSharding(mesh, P("seeds"))`` via ``jax.shard_map``): each device maps its own seeds, and
nothing is communicated until the results come back to the host. Shape- and
branch-defining settings are static; every float (learning rates, scales, spectra) is traced, so
a sweep over them compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .dynamics import TrainSpec, check_optimizer, make_optimizer, train
from .inits import (NEEDS_W0, PREHEATED, RANDOM_INITS, InitHyper, InitStatic, check_inits, draw,
                    families_needed, initialize, reference_init)
from .lora import LoraSpec
from .losses import population_loss, shift_target
from .metrics import direction_metrics
from .preheat import check_preheat
from .metrics import time_to_excess
from .stats import merge_moments, moments_of, resolution
from .problems import (ProblemArrays, ProblemSpec, build_problem, optimal_loss, parse_sigma,
                       problem_arrays, sigma_eigenvalues, spectrum_values)

#: Largest number of seeds vmapped together on CPU. jaxlib 0.10.2's CPU runtime deadlocked
#: (all threads idle, the call never returning) on vmapped batches of 16–64 seeds running
#: batched QR/SVD/triangular solves inside lax.map. A batch of 8 also hung once (verify's
#: classic-preheat check, 50-seed chunks, i.e. 6 batches of 8 plus a remainder of 2); batch 1,
#: the CPU default, never has, and is the fastest on CPU anyway.
CPU_MAX_BATCH = 8

#: Number of times the chunk function was traced (a test counts compilations with it).
TRACE_COUNT = 0


@dataclasses.dataclass(frozen=True)
class HrpSpec:
    """HRP's preheat. ``rank`` p defaults to ``min(4r, min(m, n))``; ``optimizer`` and ``lr``
    default to the main run's; ``steps`` is ``T_p`` or ``"converged"`` (freeze-a only)."""

    rank: int | None = None
    steps: int | str = 20
    form: str = "classic"
    optimizer: str | None = None
    lr: float | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one ``compare`` run needs. Validated on construction (``ValueError``).

    Attributes:
      problem, lora, train, hrp: the parts (see their classes).
      inits: names from ``inits.INITS``.
      base: random family HRP's ``A_p`` and the direction scale ``c`` come from.
      init_std: Gaussian entry std (default ``1/√(3n)``, Kaiming-uniform's).
      seeds, seed: number of seeds and the root seed.
      chunk_size: seeds per jitted call (default: ≤ 64, evenly split).
      batch_size: seeds vmapped together inside a chunk on one device (default 1 on CPU, the
        device's share of the chunk on GPU; at most ``CPU_MAX_BATCH`` = 8 on CPU, see there).
      devices: local devices the seed axis is sharded over (default: all of the default
        backend's; 1 on a plain CPU).
      basis: ``auto`` (the spectral fast path where it is exact, else dense), ``dense``, or
        ``spectral`` (forced: refused where impossible, a loud warning where only inexact); see
        ``spectral_obstacles``.
      eps: excess-loss level for the time-to-ε metric.
    """

    problem: ProblemSpec = ProblemSpec()
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    hrp: HrpSpec = HrpSpec()
    inits: tuple[str, ...] = ("kaiming", "aligned", "hrp")
    base: str = "kaiming"
    init_std: float | None = None
    seeds: int = 100
    seed: int = 0
    chunk_size: int | None = None
    batch_size: int | None = None
    devices: int | None = None
    basis: str = "auto"
    eps: float = 1e-3

    def __post_init__(self):
        k, r = self.problem.k, self.lora.r
        if r > k:
            raise ValueError(f"r: {r} exceeds min(m, n) = {k}; choose r <= {k}")
        object.__setattr__(self, "inits", check_inits(self.inits, r, k))
        if self.base not in RANDOM_INITS:
            raise ValueError(f"base: {self.base!r}; use one of {', '.join(RANDOM_INITS)}")
        if self.preheats:
            check_preheat(self.preheat_rank, r, self.hrp.form, self.hrp.steps, k)
            if self.hrp.optimizer is not None:
                check_optimizer(self.hrp.optimizer, "preheat_optimizer")
            if self.hrp.lr is not None and not (math.isfinite(self.hrp.lr) and self.hrp.lr > 0):
                raise ValueError(f"preheat_lr: {self.hrp.lr} must be a positive number")
        if self.init_std is not None and not (math.isfinite(self.init_std) and self.init_std > 0):
            raise ValueError(f"init_std: {self.init_std} must be a positive number")
        check_devices(self.devices)
        if self.basis not in BASES:
            raise ValueError(f"basis: {self.basis!r}; use one of {', '.join(BASES)}")
        if self.basis == "spectral":
            impossible, inexact = spectral_obstacles(self)
            if impossible:
                raise ValueError("basis: the spectral fast path cannot run this config: "
                                 + "; ".join(impossible) + ". Use --basis dense (or auto)")
            if inexact:
                warnings.warn("basis=spectral is NOT exact here: " + "; ".join(inexact)
                              + ". Results are then a different experiment from the dense one; "
                              "use --basis auto to run dense", stacklevel=3)
        for f in ("seeds", "chunk_size", "batch_size"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{f}: {v!r} must be a positive integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: {self.seed!r} must be a non-negative integer")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps: {self.eps} must be a positive number")

    @property
    def spectral(self) -> bool:
        """Whether seeds run in ``M``'s singular basis (``problems.spectral_problem``)."""
        if self.basis == "auto":
            return not any(spectral_obstacles(self))
        return self.basis == "spectral"

    @property
    def preheats(self) -> bool:
        """Whether an init of this config runs the HRP preheat."""
        return any(i in PREHEATED for i in self.inits)

    @property
    def preheat_rank(self) -> int:
        return self.hrp.rank if self.hrp.rank is not None else min(4 * self.lora.r, self.problem.k)

    @property
    def chunk(self) -> int:
        return chunk_length(self.seeds, self.chunk_size, check_devices(self.devices))

    @property
    def vmap_batch(self) -> int:
        return vmap_batch(self.batch_size, self.chunk // check_devices(self.devices))

    @property
    def same_total_step(self) -> int | None:
        """Main-run step at which HRP has spent the same total budget (preheat counted)."""
        if not self.preheats or self.hrp.steps == "converged":
            return None
        return max(self.train.steps - self.hrp.steps, 0)

    def steps_axis(self) -> np.ndarray:
        every = self.train.every
        return np.arange(0, self.train.steps + 1, every)


BASES = ("auto", "dense", "spectral")
#: Inits that move W0 (the adapter then fits M − dW0, a dense matrix).
OFFSET_INITS = ("pissa", "olora", "lora-ga")
#: Optimizers whose update commutes with rotations of the factors (Adam's per-coordinate
#: scaling does not).
EQUIVARIANT_OPTIMIZERS = ("gd", "sgd", "flow")


def spectral_obstacles(config: "ExperimentConfig") -> tuple[list[str], list[str]]:
    """Why the spectral fast path would be impossible (first list) or inexact (second list).

    It is exact for whitened population problems, GD / heavy-ball SGD / gradient flow, and
    rotation-invariant random factors (Gaussian): then a seed's run in the basis of ``M`` is its
    dense run with the init rotated, and a rotated Gaussian is a Gaussian."""
    p = config.problem
    impossible, inexact = [], []
    if not p.whitened:
        impossible.append("Σ ≠ I (the loss then depends on M's singular vectors)")
    if p.n_samples is not None:
        impossible.append("finite-sample mode (the data are not diagonal in M's basis)")
    off = [i for i in config.inits if i in OFFSET_INITS]
    if off:
        impossible.append(f"{', '.join(off)} move W0 by a dense matrix")
    fams = [f for f in families_needed(config.inits, config.base) if f != "gaussian"]
    if fams:
        inexact.append(f"{', '.join(fams)} factors are not rotation-invariant (use --base "
                       "gaussian and the gaussian init)")
    opts = {config.train.optimizer}
    if config.preheats:
        opts.add(config.hrp.optimizer or config.train.optimizer)
    opts -= set(EQUIVARIANT_OPTIMIZERS)
    if opts:
        inexact.append(f"{', '.join(sorted(opts))} is not rotation-equivariant")
    return impossible, inexact


class Hyper(NamedTuple):
    """The traced numbers of a config."""

    arrays: ProblemArrays
    init: InitHyper


@dataclasses.dataclass(frozen=True)
class _Static:
    """The static (compile-defining) part of a config: its floats are neutralised."""

    config: ExperimentConfig


def split_config(config: ExperimentConfig) -> tuple[_Static, Hyper]:
    """Static part (hashable, floats neutralised) and traced numbers of a config."""
    dtype = jnp.result_type(float)
    lr = config.train.learning_rate
    lr_p = config.hrp.lr if config.hrp.lr is not None else lr
    n = config.problem.n
    std = config.init_std if config.init_std is not None else 1.0 / math.sqrt(3 * n)
    f = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    hyper = Hyper(
        arrays=problem_arrays(config.problem, dtype),
        init=InitHyper(s=f(config.lora.scale()), s_p=f(config.lora.scale(config.preheat_rank)),
                       std=f(std), lr=f(lr), lr_p=f(lr_p), momentum=f(config.train.momentum),
                       weight_decay=f(config.train.weight_decay)))
    p = config.problem
    parsed = parse_sigma(p.sigma)  # identity vs not and the eigenbasis are structural; β is traced
    sig = "identity" if parsed.identity else f"power:0:{parsed.basis}"
    neutral = dataclasses.replace(
        config, seeds=1, seed=0, init_std=None, eps=1.0, chunk_size=None, batch_size=None,
        devices=None,
        problem=dataclasses.replace(p, spectrum="flat", rank=None, scale=1.0,
                                    w0_spectrum="flat", w0_scale=1.0, w0_align=0.0, noise=0.0,
                                    sigma=sig),
        lora=dataclasses.replace(config.lora, alpha=None),
        train=dataclasses.replace(config.train, lr=1.0, momentum=0.0, weight_decay=0.0),
        hrp=dataclasses.replace(config.hrp, rank=config.preheat_rank, lr=None,
                                optimizer=config.hrp.optimizer or config.train.optimizer))
    return _Static(neutral), hyper


def simulate_seed(key: jax.Array, static: _Static, hyper: Hyper) -> dict:
    """All inits of one seed on the same problem. Returns ``{name: {metric: array}}`` plus
    ``optimal_loss``."""
    cfg = static.config
    r, form = cfg.lora.r, cfg.lora.form
    hy = hyper.init
    k_problem, k_init = jax.random.split(key)
    problem = build_problem(k_problem, cfg.problem, hyper.arrays,
                            with_w0=any(i in NEEDS_W0 for i in cfg.inits), spectral=cfg.spectral)
    L_opt = optimal_loss(problem, r)
    st = InitStatic(r=r, form=form, base=cfg.base, p=cfg.preheat_rank, preheat_form=cfg.hrp.form,
                    preheat_steps=cfg.hrp.steps, preheat_optimizer=cfg.hrp.optimizer)
    draws = draw(k_init, problem, st, hy, families_needed(cfg.inits, cfg.base))
    opt = make_optimizer(cfg.train.optimizer, hy.lr, hy.momentum, hy.weight_decay)
    out = {"optimal_loss": L_opt}
    for name in cfg.inits:
        params, dW0 = initialize(name, problem, st, hy, draws)
        obj = problem.objective if dW0 is None else shift_target(problem.objective, dW0)
        snap = cfg.same_total_step if name in PREHEATED else None
        res = train(params, obj, hy.s, form=form, opt=opt, steps=cfg.train.steps,
                    record_every=cfg.train.every, snapshot_step=snap)
        start = direction_metrics(params, problem, r, form)
        end = direction_metrics(res.params, problem, r, form)
        final = res.curves["loss"][-1]
        rec = {"loss_curve": res.curves["loss"], "final_loss": final, "excess_loss": final - L_opt,
               "angles_init_deg": start["angles_deg"], "angles_final_deg": end["angles_deg"],
               "captured_energy_init": start["captured_energy"],
               "captured_energy_final": end["captured_energy"]}
        if "train_loss" in res.curves:
            rec["train_loss_curve"] = res.curves["train_loss"]
        if snap is not None:
            same = population_loss(res.snapshot, obj, hy.s)
            rec["final_loss_same_total"] = same
            rec["excess_loss_same_total"] = same - L_opt
        out[name] = rec
    return out


def check_devices(devices: int | None) -> int:
    """The number of devices to shard seeds over (default: all local devices of the backend)."""
    have = jax.local_device_count()
    if devices is None:
        return have
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices: {devices!r} must be a positive integer")
    if devices > have:
        raise ValueError(f"devices: {devices} requested but this process sees {have} "
                         f"{jax.default_backend()} device(s); ask for at most {have} (to test "
                         "sharding on a CPU, start Python with XLA_FLAGS="
                         "--xla_force_host_platform_device_count=8)")
    return devices


def chunk_length(seeds: int, chunk_size: int | None = None, devices: int = 1) -> int:
    """Seeds per jitted call: ``chunk_size`` if given, else at most 64 per device, evenly split;
    rounded up to a multiple of ``devices`` (the extra seeds are computed and dropped)."""
    if chunk_size is not None:
        chunk = min(chunk_size, seeds)
    else:
        n_chunks = -(-seeds // (64 * devices))
        chunk = -(-seeds // n_chunks)
    return -(-chunk // devices) * devices


def vmap_batch(batch_size: int | None, chunk: int) -> int:
    """Seeds vmapped together inside a chunk: 1 on CPU and the chunk on GPU by default; at most
    ``CPU_MAX_BATCH`` on CPU (with a warning)."""
    cpu = jax.default_backend() == "cpu"
    if batch_size is None:
        return 1 if cpu else chunk
    batch = min(batch_size, chunk)
    if cpu and batch > CPU_MAX_BATCH:
        warnings.warn(f"batch_size {batch} lowered to {CPU_MAX_BATCH} on CPU: larger vmapped "
                      "batches of QR/SVD can deadlock jaxlib 0.10's CPU runtime, and they are "
                      "slower there anyway (see benchmarks/throughput.py)", stacklevel=3)
        batch = CPU_MAX_BATCH
    return batch


def shard_seeds(local, devices: int, in_specs: tuple):
    """``local`` run on the first ``devices`` local devices, each on its share of the seed axis
    (the leading axis of the arguments whose spec is ``"seeds"``; ``None`` replicates one), and
    the seed-major outputs gathered back. ``devices == 1``: ``local`` itself."""
    if devices == 1:
        return local
    from jax.sharding import PartitionSpec as P

    specs = tuple(P("seeds") if s == "seeds" else P() for s in in_specs)
    return jax.shard_map(local, mesh=seed_mesh(devices), in_specs=specs, out_specs=P("seeds"),
                         check_vma=False)


def seed_mesh(devices: int):
    """The 1-D mesh ``("seeds",)`` over the first ``devices`` local devices."""
    from jax.sharding import Mesh

    return Mesh(np.array(jax.local_devices()[:devices]), ("seeds",))


def seed_sharding(devices: int):
    """Where a seed-major array lives when its seeds are split over ``devices`` devices."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    return NamedSharding(seed_mesh(devices), P("seeds"))


@functools.lru_cache(maxsize=64)
def chunk_runner(fn, static, chunk: int, batch: int, devices: int = 1):
    """The jitted function running ``fn`` on seeds ``start … start+chunk−1`` (compiled once per
    ``(fn, static, chunk, batch, devices)``); with ``devices > 1`` the seed axis is sharded."""

    def local(keys, args):
        return jax.lax.map(lambda k: fn(k, static, args), keys, batch_size=batch)

    mapped = shard_seeds(local, devices, ("seeds", None))

    def run(root: jax.Array, start: jax.Array, args):
        global TRACE_COUNT
        TRACE_COUNT += 1
        keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(start + jnp.arange(chunk))
        if devices > 1:
            keys = jax.lax.with_sharding_constraint(keys, seed_sharding(devices))
        return mapped(keys, args)

    return jax.jit(run)


class SeedMap(NamedTuple):
    """Per-seed outputs (host arrays, leading axis = seeds done), seeds done, interrupted flag."""

    out: object
    n_done: int
    interrupted: bool


def map_seeds(fn, static, args, *, seeds: int, seed: int = 0, chunk_size: int | None = None,
              batch_size: int | None = None, devices: int | None = None, progress: bool = True,
              desc: str = "seeds", reduce=None) -> SeedMap:
    """Run ``fn(key_i, static, args)`` for seeds ``i = 0 … seeds−1``, ``key_i = fold_in(key(seed), i)``.

    ``fn`` must be a module-level function and ``static`` hashable (they key the compile cache);
    ``args`` is a pytree of traced arrays. Chunks of seeds run as one jitted call each under a tqdm
    bar; a Ctrl-C keeps the chunks already finished (``interrupted=True``). With ``devices > 1``
    (default: every local device) each chunk's seeds are sharded over them.

    Several processes (after ``jax.distributed.initialize``, see ``distributed.py``): each round,
    process ``i`` runs the ``i``-th chunk of the round on its own devices and the chunks are
    gathered (``process_allgather``), so every process ends with every seed's result, the same
    as one process would get. A Ctrl-C must then reach every process.

    ``reduce``: ``host chunk -> pytree of arrays (seeds first)``; when given, each chunk is
    folded into streaming ``stats.Moments`` and dropped, so memory stays bounded whatever
    ``seeds`` is, and ``out`` is the pytree of ``Moments``.
    """
    from tqdm.auto import tqdm

    devices = check_devices(devices)
    procs, me = jax.process_count(), jax.process_index()
    chunk = chunk_length(-(-seeds // procs), chunk_size, devices)
    run = chunk_runner(fn, static, chunk, vmap_batch(batch_size, chunk // devices), devices)
    root = jax.random.key(seed)
    parts, total, done, interrupted = [], None, 0, False
    bar = tqdm(total=seeds, unit="seed", disable=not progress or me > 0, desc=desc)
    try:
        while done < seeds:
            out = jax.device_get(run(root, jnp.asarray(done + me * chunk, jnp.int32), args))
            if procs > 1:
                from jax.experimental.multihost_utils import process_allgather

                out = process_allgather(out, tiled=True)
            take = min(procs * chunk, seeds - done)
            out = jax.tree.map(lambda a: np.asarray(a)[:take], out)
            if reduce is None:
                parts.append(out)
            else:
                leaves, tree = jax.tree.flatten(reduce(out))
                mo = [moments_of(x) for x in leaves]
                total = mo if total is None else [merge_moments(a, b) for a, b in zip(total, mo)]
            done += take
            bar.update(take)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if done == 0:
        raise KeyboardInterrupt("interrupted before the first chunk of seeds finished")
    if reduce is not None:
        return SeedMap(jax.tree.unflatten(tree, total), done, interrupted)
    return SeedMap(jax.tree.map(lambda *xs: np.concatenate(xs), *parts), done, interrupted)


@dataclasses.dataclass
class ExperimentResult:
    """Per-seed results on the host: ``per_seed[name][metric]`` is an array ``(seeds, …)``.

    A streamed run (``run_experiment(..., stream=True)``) keeps no per-seed arrays:
    ``per_seed`` and ``optimal_loss`` are None and ``moments[name][metric]`` holds
    ``stats.Moments`` (see ``stream_view`` for the metrics)."""

    config: ExperimentConfig
    per_seed: dict | None
    optimal_loss: np.ndarray | None
    n_done: int
    interrupted: bool = False
    moments: dict | None = None


def stream_view(config: ExperimentConfig):
    """The per-seed quantities a streamed run keeps moments of: everything ``report`` needs that a
    mean describes (curves, final and excess losses, captured energies, angles, the paired excess
    difference against the reference init, and 0/1 indicators for divergence and for reaching
    ``eps``)."""
    ref = reference_init(config.inits)
    steps = config.steps_axis()

    def view(out: dict) -> dict:
        opt = out["optimal_loss"]
        v = {"optimal_loss": opt}
        for name in config.inits:
            d = dict(out[name])
            curve = d.pop("loss_curve")
            excess_curve = curve - opt[:, None]
            d.update(loss_curve=curve, excess_curve=excess_curve,
                     diverged=(~np.all(np.isfinite(curve), axis=1)).astype(float),
                     reached_eps=np.isfinite(time_to_excess(excess_curve, steps,
                                                            config.eps)).astype(float))
            if name != ref:
                d["excess_minus_ref"] = d["excess_loss"] - out[ref]["excess_loss"]
            v[name] = d
        return v

    return view


def run_experiment(config: ExperimentConfig, progress: bool = True,
                   stream: bool = False) -> ExperimentResult:
    """Run every seed of ``config``; an interrupt (Ctrl-C) keeps the chunks already finished.

    ``stream=True`` keeps streaming moments instead of per-seed arrays (bounded memory for any
    number of seeds; medians and quantiles are then not available)."""
    check_resolution(config.eps, config.problem)
    static, hyper = split_config(config)
    res = map_seeds(simulate_seed, static, hyper, seeds=config.seeds, seed=config.seed,
                    chunk_size=config.chunk_size, batch_size=config.batch_size,
                    devices=config.devices, progress=progress,
                    reduce=stream_view(config) if stream else None)
    if stream:
        return ExperimentResult(config=config, per_seed=None, optimal_loss=None,
                                n_done=res.n_done, interrupted=res.interrupted, moments=res.out)
    merged = dict(res.out)
    opt = merged.pop("optimal_loss")
    return ExperimentResult(config=config, per_seed=merged, optimal_loss=opt, n_done=res.n_done,
                            interrupted=res.interrupted)


def check_resolution(eps: float, spec: ProblemSpec) -> None:
    """The time-to-ε level must be resolvable in the working precision: in float32 an excess loss
    below ``10·eps₃₂·½‖M‖²`` is rounding noise."""
    if jnp.result_type(float) == jnp.float64:
        return
    floor = resolution("float32", 0.5 * float(
        (spectrum_values(spec.spectrum, spec.k, spec.rank, spec.scale) ** 2).sum()
        * sigma_eigenvalues(parse_sigma(spec.sigma), spec.n).max()))
    if eps < floor:
        raise ValueError(f"eps: {eps:g} is below the float32 resolution of the excess loss "
                         f"(≈ {floor:.2g} at this loss scale); add --x64 (jax_enable_x64) or "
                         f"raise eps")
