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

The flags only touch the CPU backend and only take effect if set before JAX initialises its
backends, which is why ``hrp_theory`` sets them on import. A flag the user already put in
``XLA_FLAGS`` keeps the user's value.
"""

import os

FLAGS = {
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "--xla_cpu_multi_thread_eigen": "false",
}


def apply() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"{k}={v}" for k, v in FLAGS.items() if k not in flags]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
