"""The XLA CPU runtime: one device per core and two scheduler flags, set before JAX starts.

Importing ``hrp_theory`` changes nothing. The entry points (``hrp-sim``, the benchmarks, the
test suite) call ``configure()`` first thing; a library user who wants the same calls
``hrp_theory.configure()`` before any JAX computation::

    import hrp_theory as H
    H.configure()            # one XLA CPU device per usable core (what hrp-sim does)
    H.compile_cache()        # reuse compiled programs across processes (what hrp-sim does)

What it sets (a flag already in ``XLA_FLAGS`` keeps the user's value):

* ``--xla_force_host_platform_device_count=N``: the CPU backend shows N devices (default: one per
  usable core) and the Monte Carlo runner shards the seeds over them, as over GPUs. The small
  matmuls of a LoRA step run on one core each; N devices use N cores (1.8× on 2 cores,
  ``benchmarks/throughput.py``). Results are bit-identical for any N (``tests/test_sharding.py``).
* ``--xla_cpu_multi_thread_eigen=false``: one core per device, no oversubscription.
* ``--xla_cpu_enable_concurrency_optimized_scheduler=false``: kept from the days of the deadlock
  below; it costs nothing (measured).

It also runs NumPy's BLAS on one thread (``host_blas_threads``; ``HRP_HOST_BLAS_THREADS``
overrides). The host-side linear algebra is small (SVDs and eigendecompositions of single
weight-sized matrices), and OpenBLAS's worker threads spin while they wait: next to an XLA
program that keeps the cores busy (the test suite's other worker, a study running beside a
notebook) the SVDs of MiniLM's 30 kernel shapes took 100 s with OpenBLAS's 2 threads and 1.3 s
with one, on 2 cores.

**The deadlock this used to avoid.** jaxlib 0.10.2 splits a *batched* LAPACK call (QR, SVD,
eigh, LU, triangular solve) whose work exceeds 2·10⁵ flops over XLA's intra-op thread pool and
blocks its thread until the pieces finish (``jax::ParallelBatchMap`` → ``BlockingCounter::Wait``).
The pool has one thread per core, and XLA runs the program on those same threads, so as many
concurrent batched calls as cores (two devices, or independent calls inside one program) each
hold a thread and wait for pieces no thread is left to run. ``tools/jaxlib_lapack_deadlock/``
reproduces it in 15 lines with the gdb backtrace. jax 0.11 removed that path (it needs Python
3.12). ``hrp_theory.linalg`` calls every LAPACK routine one matrix at a time on CPU, so no
program of this package issues a batched call, and one device per core is safe.
"""

from __future__ import annotations

import os
import re

FLAGS = {
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "--xla_cpu_multi_thread_eigen": "false",
}
DEVICE_COUNT = "--xla_force_host_platform_device_count"
#: The most XLA CPU devices a host may be split into (XLA reads the count as a 32-bit integer,
#: and each device is a thread pool).
MAX_CPU_DEVICES = 1024


def x64() -> bool:
    """Whether JAX computes in float64 (``jax_enable_x64``)."""
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def backend_started() -> bool:
    """Whether JAX has initialised its backends in this process (flags no longer apply)."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def cache_dir() -> str | None:
    """Where ``compile_cache()`` keeps compiled programs: ``$HRP_COMPILE_CACHE`` (``off`` turns
    the cache off), else ``$XDG_CACHE_HOME/hrp-theory/xla`` (``~/.cache/hrp-theory/xla``)."""
    env = os.environ.get("HRP_COMPILE_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "no", "false") else env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hrp-theory", "xla")


def compile_cache(path: str | os.PathLike | None = None, min_compile_s: float = 0.1) -> str | None:
    """Turn on JAX's persistent compilation cache, so a program compiled once (``hrp-sim verify``
    compiles about a minute's worth) is read from disk by later processes; returns its folder.

    ``path`` defaults to ``cache_dir()``. A cache the user already set
    (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is kept as it is; ``HRP_COMPILE_CACHE=off``
    turns it off; a folder that cannot be created leaves it off (a run never fails for its cache).
    Programs that compile in under ``min_compile_s`` seconds are not stored. Results do not
    depend on it: a cached program is the same executable.
    """
    import jax

    have = getattr(jax.config, "jax_compilation_cache_dir", None)
    if have:
        return have
    path = os.fspath(path) if path is not None else cache_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_s))
    return path


def _set_flags(flags: str, items: dict, replace: bool) -> str:
    for key, value in items.items():
        if key in flags and not replace:
            continue
        flags = re.sub(re.escape(key) + r"=\S*", "", flags)
        flags = f"{flags} {key}={value}"
    return " ".join(flags.split())


def host_blas_threads(n: int | None = None) -> int | None:
    """Limit NumPy's BLAS (OpenBLAS, MKL, ...) to ``n`` threads (default: ``HRP_HOST_BLAS_THREADS``,
    else 1); returns the limit, or None when ``threadpoolctl`` finds no BLAS to limit."""
    from threadpoolctl import threadpool_limits

    if n is None:
        n = int(os.environ.get("HRP_HOST_BLAS_THREADS", "1"))
    import numpy  # noqa: F401  (load the BLAS so that the limit reaches it)

    limits = threadpool_limits(n, user_api="blas")
    return n if limits.get_original_num_threads().get("blas") is not None else None


def configure(cpu_devices: int | None = None) -> int:
    """Set the XLA CPU flags before JAX starts; returns the CPU device count asked for.

    Args:
      cpu_devices: XLA CPU devices to split the host into (default: one per usable core, unless
        ``XLA_FLAGS`` already sets a count). ``1`` keeps JAX's single CPU device.

    Raises ``ValueError`` for a bad count, or when JAX has already started with other settings
    (the fix: call ``configure`` first, or set ``XLA_FLAGS`` before Python starts).
    """
    from .validation import optional_positive_int

    optional_positive_int(cpu_devices, "cpu_devices", MAX_CPU_DEVICES)
    host_blas_threads()
    flags = os.environ.get("XLA_FLAGS", "")
    user_count = re.search(re.escape(DEVICE_COUNT) + r"=(\d+)", flags)
    want = (
        cpu_devices
        if cpu_devices is not None
        else (int(user_count.group(1)) if user_count else usable_cores())
    )
    new = _set_flags(
        _set_flags(flags, FLAGS, replace=False),
        {DEVICE_COUNT: want},
        replace=cpu_devices is not None,
    )
    if backend_started():
        import jax

        have = len(jax.devices("cpu"))
        if have != want:
            raise ValueError(
                f"cpu_devices: JAX has already started with {have} CPU device(s) in "
                f"this process; call hrp_theory.configure({want}) before any JAX "
                f"computation, or start Python with XLA_FLAGS={DEVICE_COUNT}={want}"
            )
        return have
    os.environ["XLA_FLAGS"] = new
    return want
