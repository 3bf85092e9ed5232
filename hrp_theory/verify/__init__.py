"""``hrp-sim verify``: every closed form and bound of docs/theory.md §8 next to its Monte Carlo
estimate, with a verdict whose tolerance comes from the standard error.

One module per theory family (``asymmetric``, ``aligned``, ``hrp``, ``classic``, ``regimes``,
``anisotropic``, ``hmt``), the rules in ``_rules``, the report in ``report``; the catalogue is
``CHECKS`` in ``catalogue``. A new check is a function ``Context -> Outcome`` in its family's
module and one line in the catalogue. The checks run in float64 (``jax_enable_x64``); seed
``i`` of each Monte Carlo uses ``fold_in(root_key(seed), i)``. ``quick`` uses fewer seeds (the
tolerances follow the larger SE) and fewer settings.

**Where the computation overrules the notes this catalogue started from** (checks 11c, 11d):
they stated the converged freeze-A preheat as ``B_pA_pᵀ = M A_p(A_pᵀΣA_p)⁻¹A_pᵀΣ``, row space
``Σ·col(A_p)``, so that HRP(p = r) would differ from random. From the flow
``dB/dt = (M − BA_pᵀ)ΣA_p`` the limit is ``B_∞ = MΣA_p(A_pᵀΣA_p)⁻¹``, so ``B_∞A_pᵀ =
MΣA_p(A_pᵀΣA_p)⁻¹A_pᵀ``, whose row space is ``col(A_p)``: HRP(p = r) *is* the random init for
every Σ (docs/theory.md §6). Trained GD (20 000 steps) agrees to 1e-15.
"""

from __future__ import annotations

import dataclasses
import time

from ..runtime import x64
from ._rules import (
    Context,
    Outcome,
    Row,
    Settings,
    band,
    bound,
    count,
    exceeds,
    expectation,
    experiment,
    pathwise,
)
from .catalogue import CHECKS, check_function, check_names


def run_checks(names=None, settings: Settings = Settings()) -> dict:
    """Run the named checks (default: all). Returns ``{"passed", "checks", "data", "timings_s",
    "settings", "interrupted"}``; each row carries the ``check`` it belongs to. A Ctrl-C keeps
    the checks already finished."""
    names = check_names(names)
    if not x64():
        raise ValueError(
            "verify runs in float64: call jax.config.update('jax_enable_x64', True) "
            "before running checks (the CLI does this)"
        )
    ctx = Context(settings)
    rows, data, timings, interrupted = [], {}, {}, False
    for name in names:
        t0 = time.perf_counter()
        try:
            out = check_function(name)(ctx)
        except KeyboardInterrupt:
            interrupted = True
            break
        timings[name] = time.perf_counter() - t0
        rows += [{"check": name, **dataclasses.asdict(r)} for r in out.rows]
        data.update(out.data)
    return {
        "passed": bool(rows) and all(r["passed"] for r in rows) and not interrupted,
        "checks": rows,
        "data": data,
        "timings_s": timings,
        "settings": dataclasses.asdict(settings),
        "interrupted": interrupted,
    }


__all__ = [
    "CHECKS",
    "Context",
    "Outcome",
    "Row",
    "Settings",
    "band",
    "bound",
    "check_function",
    "check_names",
    "count",
    "exceeds",
    "expectation",
    "experiment",
    "pathwise",
    "run_checks",
]
