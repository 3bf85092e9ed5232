"""XLA CPU settings applied before JAX starts its backend.

jaxlib 0.10.2's CPU runtime deadlocks on some programs this package compiles: every worker thread
parks and the call never returns (seen on 2 cores, float64, seeds vmapped 50–64 at a time, in
programs with several independent batched QR/SVD/triangular-solve custom calls: the Haar draws of
``U`` and ``V``, and the converged freeze-A preheat). Turning the concurrency-optimised scheduler
off removed the deterministic hang of two independent batched QRs (64 seeds); turning Eigen's
multi-threading off as well costs nothing (``benchmarks/throughput.py``: 40.5k seed·steps/s with
both flags, 37.1k with the scheduler flag alone). The flags do not remove every hang: batches of
16–64 seeds inside ``lax.map`` still hung now and then, so the runner also caps the vmapped batch
on CPU at ``montecarlo.CPU_MAX_BATCH`` = 8, and defaults to 1 seed at a time there (a batch of 8
with a remainder hung once too; batch 1 never has).

Splitting the CPU into one XLA device per core (``split_cpu``, ``hrp-sim … --cpu-devices N``) is
opt-in. With Eigen single-threaded, one XLA CPU device runs the small per-seed matmuls of a LoRA
step on one core; N devices shard the seeds like GPUs do, and on the 2-core CI machine that
gives the dense path 1.8× (``benchmarks/throughput.py``: 35k → 63k seed·steps/s at m = n = 256,
r = 8), with results bit-identical to one device (``tests/multidevice``). It is not the default
because with it the full test suite hung in three runs out of three (in the quickstart notebook's
kernel), which it never did with one device. gdb shows why: both ``tf_XLAEigen`` pool threads (2
on 2 cores) sit in jaxlib's batched LAPACK QR (``lapack_dgeqrf_ffi`` → ``ParallelBatchMap`` →
``BlockingCounter::Wait``), each waiting for sub-tasks it queued on that same, now full, pool.
One device runs one such call at a time, which leaves a pool thread free.

The flags only touch the CPU backend and only take effect if set before JAX initialises its
backends, which is why ``hrp_theory`` sets them on import. A flag the user already put in
``XLA_FLAGS`` keeps the user's value.
"""

import os
import re

FLAGS = {
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "--xla_cpu_multi_thread_eigen": "false",
}


def apply() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"{k}={v}" for k, v in FLAGS.items() if k not in flags]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def split_cpu(devices: int) -> None:
    """Make the CPU backend ``devices`` XLA devices (replacing any count in ``XLA_FLAGS``); call it
    before anything runs on JAX (a ``ValueError`` says so otherwise)."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"cpu_devices: {devices!r} must be a positive integer (e.g. "
                         f"{usable_cores()}, one per core)")
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ValueError("cpu_devices: JAX has already started its CPU backend in this process; "
                         "call split_cpu first, or start Python with XLA_FLAGS="
                         f"--xla_force_host_platform_device_count={devices}")
    key = "--xla_force_host_platform_device_count"
    flags = re.sub(key + r"=\S*", "", os.environ.get("XLA_FLAGS", "")).strip()
    os.environ["XLA_FLAGS"] = f"{flags} {key}={devices}".strip()
