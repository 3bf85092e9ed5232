"""XLA CPU settings applied before JAX starts its backend.

XLA's concurrency-optimised CPU scheduler deadlocks on some programs this package compiles:
two independent batched QR factorisations (e.g. the Haar draws of ``U`` and ``V`` for 64 seeds
vmapped together, float64) leave every worker thread parked and the call never returns
(jaxlib 0.10.2, reproduced on 2 cores; batch 32 passes, batch 64 hangs). Turning that scheduler
off removes the hang. The flag only touches the CPU backend, and only takes effect if set before
JAX initialises its backends, which is why ``hrp_theory`` sets it on import; a user who already
set ``XLA_FLAGS`` keeps their value for this flag.
"""

import os

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def apply() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + FLAG + "=false").strip()
