"""Several hosts: start ``jax.distributed`` so one Monte Carlo run uses every host's devices.

After ``initialize``, ``seeds.map_seeds`` gives each process its own chunk of every round of
seeds (run on its local devices, sharded as on one host) and gathers the chunks, so each process
holds every seed's result, identical to a one-process run; only process 0 writes files and prints.

    # on every host (process i of N), the same command:
    hrp-sim compare --coordinator HOST0:PORT --num-processes N --process-id i ...
    # under Slurm, Open MPI or on Cloud TPU the three are detected:
    hrp-sim compare --distributed ...

From Python, call ``hrp_theory.distributed.initialize(...)`` before anything else touches JAX.
"""

from __future__ import annotations

import re


def check(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Either none of the three (detect them from the cluster) or all three, consistent."""
    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "coordinator, num_processes and process_id go together: give all three "
            "(--coordinator HOST:PORT --num-processes N --process-id I), or none "
            "with --distributed under Slurm / Open MPI / Cloud TPU"
        )
    if coordinator is None:
        return
    if not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", coordinator):
        raise ValueError(
            f"coordinator: {coordinator!r} must be HOST:PORT (process 0's address "
            "and a free port, e.g. 10.0.0.1:12355)"
        )
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes: {num_processes!r} must be a positive integer")
    if (
        isinstance(process_id, bool)
        or not isinstance(process_id, int)
        or not 0 <= process_id < num_processes
    ):
        raise ValueError(
            f"process_id: {process_id!r} must be an integer in "
            f"[0, {num_processes - 1}] (one per process, process 0 hosting the "
            "coordinator)"
        )


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """``jax.distributed.initialize`` with checked arguments (none: cluster auto-detection).
    Must run before any JAX computation in this process."""
    check(coordinator, num_processes, process_id)
    import jax

    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def is_primary() -> bool:
    """Whether this process writes results (process 0, or the only one)."""
    import jax

    return jax.process_index() == 0
