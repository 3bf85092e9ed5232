"""Gradient flow: closed forms, convergence order, conservation law, adaptive integration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrp_theory import LoraParams, flow, theory
from hrp_theory.problems import ProblemSpec, make_problem


@pytest.fixture(scope="module")
def problem():
    return make_problem(
        jax.random.key(0), ProblemSpec(m=12, n=10, spectrum="power:1"), with_w0=False
    )


def freeze_a_start(r=3, n=10, m=12, key=1):
    A = jax.random.normal(jax.random.key(key), (n, r)) / jnp.sqrt(3 * n)
    return LoraParams(jnp.zeros((m, r)), A)


def test_freeze_a_flow_matches_linear_ode_closed_form(problem):
    """THEORY §3.1: B(t) = M A G⁻¹(I − e^{−tG}); RK4 dt = 0.01 reaches it to 1e-10."""
    P0 = freeze_a_start()
    f = flow.gradient_flow(
        P0, problem.objective, 1.0, form="freeze-a", t_end=2.0, saves=4, method="rk4", dt=0.01
    )
    for k, t in enumerate(np.asarray(f.t)):
        exact = theory.freeze_a_flow(P0.A, problem.M, None, t)
        np.testing.assert_allclose(f.ys.B[k], exact, atol=1e-10)


@pytest.mark.parametrize("method,order", [("euler", 1), ("rk4", 4)])
def test_convergence_order(problem, method, order):
    """The log-error slope against dt is the integrator's order (±0.15)."""
    P0 = freeze_a_start()
    exact = theory.freeze_a_flow(P0.A, problem.M, None, 1.0)
    dts = [0.1, 0.05, 0.025]
    errs = [
        float(
            jnp.linalg.norm(
                flow.gradient_flow(
                    P0,
                    problem.objective,
                    1.0,
                    form="freeze-a",
                    t_end=1.0,
                    saves=1,
                    method=method,
                    dt=dt,
                ).params.B
                - exact
            )
        )
        for dt in dts
    ]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.15, (errs, slope)


def test_classic_flow_conserves_gram_difference(problem):
    """BᵀB − AᵀA = −A₀ᵀA₀ along the classic flow, to THEORY §8.8's 1e-9 with RK4 dt = 0.02."""
    A0 = 0.1 * jax.random.normal(jax.random.key(2), (10, 3))
    P0 = LoraParams(jnp.zeros((12, 3)), A0)
    inv = lambda p: p.B.T @ p.B - p.A.T @ p.A + A0.T @ A0
    f = flow.gradient_flow(
        P0,
        problem.objective,
        1.0,
        form="classic",
        t_end=20.0,
        saves=10,
        dt=0.02,
        observe=lambda p: jnp.linalg.norm(inv(p)),
    )
    assert float(jnp.max(f.ys)) < 1e-9
    # GD with the same step breaks the invariant at O(η²) per step: the test can fail.
    g = flow.gradient_flow(
        P0,
        problem.objective,
        1.0,
        form="classic",
        t_end=20.0,
        saves=10,
        method="euler",
        dt=0.02,
        observe=lambda p: jnp.linalg.norm(inv(p)),
    )
    assert float(jnp.max(g.ys)) > 1e-6


def test_tsit5_is_error_controlled_and_stops_at_steady_state(problem):
    pytest.importorskip("diffrax")
    P0 = freeze_a_start()
    exact = theory.freeze_a_flow(P0.A, problem.M, None, 1.0)
    f = flow.gradient_flow(
        P0,
        problem.objective,
        1.0,
        form="freeze-a",
        t_end=1.0,
        saves=2,
        method="tsit5",
        rtol=1e-11,
        atol=1e-13,
    )
    np.testing.assert_allclose(f.params.B, exact, atol=1e-9)
    s = flow.gradient_flow(
        P0,
        problem.objective,
        1.0,
        form="freeze-a",
        t_end=1e4,
        saves=4,
        method="tsit5",
        rtol=1e-9,
        atol=1e-11,
        steady_state=True,
    )
    Q = jnp.linalg.qr(P0.A)[0]
    limit = problem.M @ Q @ Q.T
    assert int(s.n_steps) < 2000  # stopped long before t = 1e4
    assert float(jnp.linalg.norm(s.params.B @ P0.A.T - limit)) < 1e-6
    assert np.all(np.isfinite(np.asarray(s.ys.B)))  # later saves repeat the final state


def test_flow_vmaps_over_seeds(problem):
    def end(key):
        A = jax.random.normal(key, (10, 3)) / jnp.sqrt(30)
        return flow.gradient_flow(
            LoraParams(jnp.zeros((12, 3)), A),
            problem.objective,
            1.0,
            form="freeze-a",
            t_end=1.0,
            saves=1,
        ).params.B

    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.jit(jax.vmap(end))(keys)
    np.testing.assert_allclose(batched[2], end(keys[2]), rtol=1e-12)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(t_end=0.0), "t_end"),
        (dict(t_end=-1.0), "t_end"),
        (dict(dt=0.0), "dt"),
        (dict(saves=0), "saves"),
        (dict(method="rk45"), "method"),
        (dict(dt=0.3), "does not divide"),
        (dict(rtol=-1.0, method="tsit5"), "rtol"),
        (dict(steady_state=True), "steady_state"),
    ],
)
def test_bad_integration_requests(problem, kw, match):
    args = dict(form="freeze-a", t_end=1.0, saves=2, dt=0.01) | kw
    with pytest.raises(ValueError, match=match):
        flow.gradient_flow(freeze_a_start(), problem.objective, 1.0, **args)


def test_flow_optimizer_runs_through_the_runner():
    """`--optimizer flow` in compare: aligned freeze-A loss follows T_r + e^{−2c²t}E_r."""
    from helpers import config

    from hrp_theory import run_experiment, spectrum_values

    cfg = config(
        m=8,
        n=6,
        r=2,
        form="freeze-a",
        inits=("aligned",),
        optimizer="flow",
        lr=0.05,
        steps=40,
        record_every=10,
        seeds=2,
    )
    res = run_experiment(cfg, progress=False)
    s = spectrum_values("power:1", 6)
    pred = theory.aligned_curve(s, 2, 1 / 3, np.arange(5) * 0.5) / 2
    np.testing.assert_allclose(
        res.per_seed["aligned"]["loss_curve"], np.broadcast_to(pred, (2, 5)), rtol=1e-8
    )
