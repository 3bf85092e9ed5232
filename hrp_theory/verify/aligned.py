"""Check 2: the target-aligned init with A frozen (docs/theory.md §4): GD and gradient-flow
curves and the endpoint T_r.
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ._rules import R_, Context, Outcome, experiment, pathwise, rel_error, singular_values_of


def check_aligned(ctx: Context) -> Outcome:
    """§8.2 aligned A = c·V_r: GD and gradient-flow curves, endpoint T_r."""
    st, rows = ctx.st, []
    sigma = singular_values_of("power:1")
    _, _, T = theory.energies(sigma, R_)
    c2 = 1.0 / 3.0  # column norm² of the Kaiming init the direction replaces
    lr, steps = 0.9, 120
    res = ctx.run(
        experiment("power:1", "freeze-a", ("aligned",), 3, st, steps=steps, lr=lr, record_every=1)
    )
    R = 2 * res["aligned"]["loss_curve"]
    pred = theory.aligned_gd_curve(sigma, R_, c2, lr, np.arange(steps + 1))
    rows.append(
        pathwise(
            "2 aligned GD curve",
            "R_k = T_r + (1 − ηc²)^{2k}E_r, η = 0.9, k ≤ 120",
            rel_error(R, pred),
            st.pathwise_tol,
            3,
        )
    )
    rows.append(
        pathwise(
            "2 aligned endpoint = T_r",
            "A = c·V_r, GD 120 steps",
            rel_error(R[:, -1], T),
            1e-2 * st.pathwise_tol,
            3,
        )
    )  # docs/theory.md §8.2: T_r to 1e-10
    dt, t_end = 0.02, 6.0  # t = 1.5, 3, 4.5, 6 = (0.5, 1, 1.5, 2)/s²
    res = ctx.run(
        experiment(
            "power:1",
            "freeze-a",
            ("aligned",),
            3,
            st,
            steps=int(t_end / dt),
            lr=dt,
            optimizer="flow",
            record_every=75,
        )
    )
    R = 2 * res["aligned"]["loss_curve"]
    t = np.linspace(0, t_end, R.shape[1])
    rows.append(
        pathwise(
            "2 aligned gradient-flow curve",
            "R(t) = T_r + e^{−2s²t}E_r at t·s² ∈ {0.5, 1, 1.5, 2}, RK4 dt = 0.02",
            rel_error(R, theory.aligned_curve(sigma, R_, c2, t)),
            st.pathwise_tol,
            3,
        )
    )
    return Outcome(rows)
