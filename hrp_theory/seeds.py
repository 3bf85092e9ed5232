"""The seed engine: run a per-seed function over many seeds, in jitted chunks, on every device.

Seed ``i`` of root seed ``s`` uses ``fold_in(root_key(s), i)``, so its result does not depend on
how many seeds run, on the chunk size, on the number of devices or hosts, or on jit. Chunks of
seeds run as one jitted call each (a tqdm bar over chunks); inside a chunk ``lax.map`` vmaps
``batch`` seeds at a time on each device (``devices.py``). A Ctrl-C (or a SIGTERM that the caller
turns into ``KeyboardInterrupt``) keeps every chunk already finished. With ``reduce=`` each chunk
is folded into streaming moments and dropped (bounded memory for any number of seeds). Used by
``experiment``, ``verify`` and the real-layer study.

Several processes (after ``distributed.initialize``): each round, process ``i`` runs the
``i``-th chunk on its own devices and the chunks are gathered (``process_allgather``), so every
process ends with every seed's result, the same as one process would get.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import devices as dev
from . import exported
from .stats import merge_moments, moments_of
from .validation import MAX_SEEDS, optional_positive_int, positive_int
from .validation import seed as check_seed

#: Number of chunk programs traced or read back from disk (``exported``); a test counts
#: compilations with it.
TRACE_COUNT = 0


def root_key(seed: int) -> jax.Array:
    """The threefry key of a root seed in ``[0, 2⁶⁴)``: key data ``[seed >> 32, seed mod 2³²]``,
    which is ``jax.random.key(seed)`` for every seed below 2³² (in float32 and float64 mode),
    and a distinct stream for every larger one (no 2³² aliasing)."""
    seed = check_seed(seed)
    data = np.array([seed >> 32, seed & 0xFFFFFFFF], np.uint32)
    return jax.random.wrap_key_data(jnp.asarray(data), impl="threefry2x32")


@functools.lru_cache(maxsize=64)
def chunk_runner(
    fn,
    static,
    chunk: int,
    batch: int,
    devices: int = 1,
    width: int | None = None,
    extent: int | None = None,
):
    """The jitted function running ``fn`` on seeds ``start … start+chunk−1`` (compiled once per
    ``(fn, static, chunk, batch, devices, width, extent)``, and kept on disk by ``exported``
    for later processes); with ``devices > 1`` the seed axis is sharded; compiled with
    ``devices.compiler_options(width, extent)``."""

    def local(keys, args):
        return jax.lax.map(lambda k: fn(k, static, args), keys, batch_size=batch)

    mapped = dev.shard_seeds(local, devices, ("seeds", None))

    def run(root: jax.Array, start: jax.Array, args):
        global TRACE_COUNT
        TRACE_COUNT += 1
        keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(start + jnp.arange(chunk))
        if devices > 1:
            keys = jax.lax.with_sharding_constraint(keys, dev.seed_sharding(devices))
        return mapped(keys, args)

    options = dev.compiler_options(width, extent)
    return exported.program(
        jax.jit(run, compiler_options=options),
        exported.identity(fn, static, chunk, batch, devices, width, extent),
        options,
        mesh=dev.seed_mesh(devices) if devices > 1 else None,
        on_read=_read_back,
    )


def _read_back() -> None:
    """A chunk program read back from disk (``exported``) counts as one traced."""
    global TRACE_COUNT
    TRACE_COUNT += 1


class SeedMap(NamedTuple):
    """Per-seed outputs (host arrays, leading axis = seeds done), seeds done, interrupted flag."""

    out: Any
    n_done: int
    interrupted: bool


def map_seeds(
    fn,
    static,
    args,
    *,
    seeds: int,
    seed: int = 0,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    devices: int | None = None,
    progress: bool = True,
    desc: str = "seeds",
    reduce=None,
    width: int | None = None,
    extent: int | None = None,
) -> SeedMap:
    """Run ``fn(key_i, static, args)`` for seeds ``i = 0 … seeds−1``, ``key_i = fold_in(root, i)``.

    Args:
      fn: a module-level function (it keys the compile cache, with ``static``).
      static: hashable settings that shape the program.
      args: a pytree of arrays, traced (a sweep over them compiles once).
      seeds: how many seeds.
      seed: the root seed.
      chunk_size: seeds per jitted call (``devices.plan``).
      batch_size: seeds vmapped together on a device (``devices.plan``).
      devices: local devices to shard over (``devices.local_devices``).
      desc: the progress bar's label.
      progress: show a progress bar.
      reduce: ``host chunk -> pytree of arrays (seeds first)``; when given, each chunk is folded
        into streaming ``stats.Moments`` and dropped, and ``out`` is the pytree of ``Moments``.
      width: the widest matrix of a seed's program when its target is diagonal
        (``devices.width``; None: dense); a small one gets larger default chunks and CPU batches
        (``devices.plan``)
      extent: the widest matrix of a seed's program, whatever its target (None: unknown); a
        narrow one is compiled without YNNPACK's fusion on CPU (``devices.compiler_options``)

    A Ctrl-C keeps the chunks already finished (``interrupted=True``); before the first one it
    raises ``KeyboardInterrupt``.
    """
    from tqdm.auto import tqdm

    positive_int(seeds, "seeds", MAX_SEEDS)
    optional_positive_int(chunk_size, "chunk_size")
    optional_positive_int(batch_size, "batch_size")
    n_dev, chunk, batch, _ = dev.plan(seeds, chunk_size, batch_size, devices, width)
    procs, me = jax.process_count(), jax.process_index()
    run = chunk_runner(fn, static, chunk, batch, n_dev, width, extent)
    root = root_key(seed)
    parts, total, tree, done, interrupted = [], None, None, 0, False
    bar = tqdm(total=seeds, unit="seed", disable=not progress or me > 0, desc=desc)
    try:
        while done < seeds:
            out = jax.device_get(run(root, jnp.asarray(done + me * chunk, jnp.int32), args))
            if procs > 1:
                from jax.experimental.multihost_utils import process_allgather

                out = process_allgather(out, tiled=True)
            take = min(procs * chunk, seeds - done)
            out = jax.tree.map(lambda a, t=take: np.asarray(a)[:t], out)
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
        assert tree is not None and total is not None
        return SeedMap(jax.tree.unflatten(tree, total), done, interrupted)
    return SeedMap(jax.tree.map(lambda *xs: np.concatenate(xs), *parts), done, interrupted)
