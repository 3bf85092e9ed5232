"""Where the seeds run: local devices, chunk and batch sizes, the seed mesh, a memory check.

Resolved when a run starts, never when a config is built (building a config does not start
JAX's backend). Seeds are laid out along a 1-D ``("seeds",)`` mesh over the local devices of the
default backend (``NamedSharding(mesh, P("seeds"))``) and mapped per device with
``jax.shard_map``: nothing is communicated until the results come back to the host.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np

from .validation import optional_positive_int

#: Seeds per device in one jitted call when no chunk size is given.
CHUNK_PER_DEVICE = 64
#: ... and when a seed's program is small (``is_small``).
SMALL_CHUNK_PER_DEVICE = 1024
#: Seeds vmapped together on a CPU device when a seed's program is small. Chosen by measurement
#: on 2 cores (``benchmarks/reduced.py``'s configuration, its ``layout`` figures: 64 seeds a batch
#: were fastest): see docs/performance.md.
SMALL_BATCH = 64
#: A program is small when its target is diagonal (the spectral or reduced basis: every product
#: is a few times r wide or a row scaling) and its matrices are at most this many coordinates
#: wide. Measured on 2 cores (``benchmarks/batching.py``, docs/performance.md): batches of 64
#: with XLA's own fusion ran such a seed 1.8-4.1x faster than one seed at a time with YNNPACK's
#: at widths 48 to 256; at 1024 batches gained 1.5-1.6x only with YNNPACK's fusion, so wider
#: programs keep the general plan.
SMALL_DIM = 256
#: A small program's batches run seed-minor (``layout.py``) when its matrices are at most this
#: wide: at 48 x 64 seed-minor and seed-major batches ran at the same speed.
SEEDS_LAST_DIM = 32
#: A program whose target is not diagonal (dense) is compiled without YNNPACK's fusion, one seed
#: at a time, when its matrices are at most this wide. Measured on 2 cores, one seed at a time
#: (``benchmarks/batching.py``, docs/performance.md): without it 2.5x faster at 48 x 64, 2.4x at
#: 64 x 64 and 1.2x at 128 x 128; at 256 x 256, 1.2x slower.
DENSE_XLA_FUSION_DIM = 128
#: The smallest vmapped batch that runs seed-minor (``seeds_last``); a smaller one runs
#: seed-major (vmapped as it is).
SEEDS_LAST_MIN = 16
#: The backends on which a small program's batches run seed-minor (measured on CPU only).
SEEDS_LAST_BACKENDS = ("cpu",)


def width(basis, m: int, n: int) -> int | None:
    """The widest matrix of a seed's program of an ``m × n`` problem in ``basis`` (a
    ``problems.Basis``) when its target is diagonal (the spectral or reduced basis), else None."""
    if basis.kind == "reduced":
        return max(basis.rows, basis.cols)
    return max(m, n) if basis.kind == "spectral" else None


def is_small(width: int | None) -> bool:
    """Whether a seed's program of this ``width`` (``width``) is small: batched on a CPU and
    compiled with ``compiler_options``."""
    return width is not None and width <= SMALL_DIM


def seeds_last(batch: int, width: int | None) -> bool:
    """Whether a vmapped batch of ``batch`` seeds of a program of this ``width`` runs seed-minor
    (``layout.py``): at least ``SEEDS_LAST_MIN`` seeds of matrices at most ``SEEDS_LAST_DIM``
    wide, on a backend of ``SEEDS_LAST_BACKENDS``."""
    return (
        width is not None
        and width <= SEEDS_LAST_DIM
        and batch >= SEEDS_LAST_MIN
        and jax.default_backend() in SEEDS_LAST_BACKENDS
    )


def compiler_options(width: int | None, extent: int | None = None) -> dict | None:
    """XLA options of a chunk's program on CPU: without the YNNPACK library fusion of reductions
    when the program is small (``is_small``: YNNPACK ran the seed-minor layout's training step
    10× slower, and a seed-major batch of a 48 × 64 spectral run 3× slower, than XLA's own loop
    fusion) or when its widest matrix, ``extent``, is at most ``DENSE_XLA_FUSION_DIM``
    (a dense 48 × 64 seed 2.5× faster without it); docs/performance.md."""
    if jax.default_backend() != "cpu":
        return None
    if is_small(width) or (extent is not None and extent <= DENSE_XLA_FUSION_DIM):
        return {"xla_cpu_experimental_ynn_fusion_type": ""}
    return None


def local_devices(devices: int | None = None) -> int:
    """The number of local devices to shard seeds over (default: all of the default backend)."""
    optional_positive_int(devices, "devices")
    have = jax.local_device_count()
    if devices is None:
        return have
    if devices > have:
        raise ValueError(
            f"devices: {devices} requested but this process sees {have} "
            f"{jax.default_backend()} device(s); ask for at most {have} (on a CPU, "
            f"--cpu-devices {devices} or hrp_theory.configure({devices}) before JAX "
            "starts splits the host into that many devices)"
        )
    return devices


def chunk_length(
    seeds: int, chunk_size: int | None = None, devices: int = 1, width: int | None = None
) -> int:
    """Seeds per jitted call: ``chunk_size`` if given, else at most 64 per device (1024 for a
    small program, ``is_small``), evenly split; rounded up to a multiple of ``devices`` (the
    extra seeds are computed and dropped)."""
    if chunk_size is not None:
        chunk = min(chunk_size, seeds)
    else:
        per_device = SMALL_CHUNK_PER_DEVICE if is_small(width) else CHUNK_PER_DEVICE
        n_chunks = -(-seeds // (per_device * devices))
        chunk = -(-seeds // n_chunks)
    return -(-chunk // devices) * devices


def vmap_batch(batch_size: int | None, per_device: int, width: int | None = None) -> int:
    """Seeds vmapped together on one device: ``batch_size`` (at most the device's share of the
    chunk); by default the whole share on an accelerator, and on a CPU 1 (the fastest for dense
    matrices) or ``SMALL_BATCH`` for a small program (``is_small``: one seed at a time leaves
    the CPU waiting on dispatch; the narrowest run seed-minor, ``seeds_last``)."""
    if batch_size is None:
        if jax.default_backend() != "cpu":
            return per_device
        batch_size = SMALL_BATCH if is_small(width) else 1
    return min(batch_size, per_device)


class Plan(NamedTuple):
    """How one process lays out a run's seeds: local devices, seeds per jitted call, seeds
    vmapped together on a device, and whether those batches run seed-minor."""

    devices: int
    chunk: int
    batch: int
    seeds_last: bool


def plan(
    seeds: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    devices: int | None = None,
    width: int | None = None,
) -> Plan:
    """The ``Plan`` of ``seeds`` seeds of a program of this ``width`` (``width``; None: dense)
    split over this run's processes (``seeds.map_seeds``)."""
    n_dev = local_devices(devices)
    chunk = chunk_length(-(-seeds // jax.process_count()), chunk_size, n_dev, width)
    batch = vmap_batch(batch_size, chunk // n_dev, width)
    return Plan(n_dev, chunk, batch, seeds_last(batch, width))


def seed_mesh(devices: int):
    """The 1-D mesh ``("seeds",)`` over the first ``devices`` local devices."""
    from jax.sharding import Mesh

    return Mesh(np.array(jax.local_devices()[:devices]), ("seeds",))


def seed_sharding(devices: int):
    """Where a seed-major array lives when its seeds are split over ``devices`` devices."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    return NamedSharding(seed_mesh(devices), P("seeds"))


def shard_seeds(local, devices: int, in_specs: tuple):
    """``local`` run on the first ``devices`` local devices, each on its share of the seed axis
    (the leading axis of the arguments whose spec is ``"seeds"``; ``None`` replicates one), and
    the seed-major outputs gathered back. ``devices == 1``: ``local`` itself."""
    if devices == 1:
        return local
    from jax.sharding import PartitionSpec as P

    specs = tuple(P("seeds") if s == "seeds" else P() for s in in_specs)
    return jax.shard_map(
        local, mesh=seed_mesh(devices), in_specs=specs, out_specs=P("seeds"), check_vma=False
    )


def available_memory(host: bool = False) -> tuple[int | None, str]:
    """``(bytes, where)``: free memory of one default-backend device (its allocator's limit on an
    accelerator, the host's available memory on CPU, or with ``host``); ``None`` when unknown."""
    if not host and jax.default_backend() != "cpu":
        stats = jax.local_devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit")
        return (
            int(limit) - int(stats.get("bytes_in_use", 0)) if limit else None,
            f"{jax.default_backend()} device memory",
        )
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "available host memory"
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host memory"
        except (ValueError, OSError, AttributeError):
            return None, "host memory"


def check_memory(bytes_per_seed: float, in_flight: int, fix: str, host: bool = False) -> None:
    """Refuse, with the estimate, a run whose ``in_flight`` seeds at ``bytes_per_seed`` each
    would not fit in memory (``fix`` says what to change; ``host``: the host's memory)."""
    free, where = available_memory(host)
    need = bytes_per_seed * in_flight
    if free is not None and need > free:
        raise ValueError(
            f"memory: this run needs about {need / 2**30:,.1f} GiB at once "
            f"({in_flight:,} seed(s) × {bytes_per_seed / 2**20:,.3g} MiB), more "
            f"than the {free / 2**30:,.1f} GiB of {where}; {fix}"
        )
