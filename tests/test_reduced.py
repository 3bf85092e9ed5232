"""The reduced basis (docs/theory.md §2): exact seed by seed against the full run from the QR of
its own draw, and, with the Bartlett draw, exact in distribution at widths no dense run reaches."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_mean_within

import hrp_theory as H
from hrp_theory import theory
from hrp_theory.bases import reduced_obstacles, resolve_basis
from hrp_theory.dynamics import make_optimizer, train
from hrp_theory.factors import LoraParams
from hrp_theory.metrics import direction_metrics
from hrp_theory.preheat import preheat_then_svd
from hrp_theory.problems import (
    Basis,
    ProblemSpec,
    problem_arrays,
    reduced_problem,
    spectral_problem,
)

M_, N_, K, R, P = 20, 24, 5, 2, 6
SPEC = ProblemSpec(m=M_, n=N_, spectrum="values:1,0.8,0.5,0.3,0.2")


def _pair(side="A"):
    """The full problem in M's singular basis, its reduced twin, and a Gaussian draw in both."""
    arrays = problem_arrays(SPEC)
    full = spectral_problem(SPEC, arrays)
    rows, cols = (K + P, K) if side == "B" else (K, K + P)
    red = reduced_problem(arrays, Basis("reduced", K, rows, cols))
    dim = M_ if side == "B" else N_
    X = 0.3 * jax.random.normal(jax.random.key(4), (dim, P))
    Q, Rf = jnp.linalg.qr(X[K:])
    return full, red, X, jnp.concatenate([X[:K], Rf]), Q


def _run(problem, params, form, opt, steps=150):
    return train(params, problem.objective, 1.0, form=form, opt=opt, steps=steps, record_every=10)


@pytest.mark.parametrize("form", ["classic", "freeze-a"])
@pytest.mark.parametrize("opt", ["gd", "sgd", "flow"])
def test_reduced_run_equals_the_full_run_seed_by_seed(form, opt):
    full, red, X, Xr, _ = _pair()
    o = make_optimizer(opt, 0.1, momentum=0.9 if opt == "sgd" else 0.0)
    a = _run(full, LoraParams(jnp.zeros((M_, R)), X[:, :R]), form, o)
    b = _run(red, LoraParams(jnp.zeros((K, R)), Xr[:, :R]), form, o)
    np.testing.assert_allclose(b.curves["loss"], a.curves["loss"], rtol=1e-10, atol=1e-13)
    ma, mb = (direction_metrics(x.params, pb, R, form) for x, pb in ((a, full), (b, red)))
    np.testing.assert_allclose(mb["angles_deg"], ma["angles_deg"], atol=1e-8)
    np.testing.assert_allclose(mb["captured_energy"], ma["captured_energy"], atol=1e-12)


def test_reduced_freeze_b_equals_the_full_run():
    full, red, X, Xr, _ = _pair("B")
    o = make_optimizer("gd", 0.1)
    a = _run(full, LoraParams(X[:, :R], jnp.zeros((N_, R))), "freeze-b", o)
    b = _run(red, LoraParams(Xr[:, :R], jnp.zeros((K, R))), "freeze-b", o)
    np.testing.assert_allclose(b.curves["loss"], a.curves["loss"], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "kw",
    [
        {"form": "classic", "steps": 20},
        {"form": "freeze-a", "steps": "converged"},
        {"form": "classic", "steps": 5, "two_sided": True},
    ],
    ids=["classic", "freeze-a converged", "two-sided"],
)
def test_reduced_preheat_and_main_run_equal_the_full_ones(kw):
    full, red, X, Xr, Q = _pair()
    pa = preheat_then_svd(X, full.objective, 1.0, 0.1, r=R, **kw)
    pb = preheat_then_svd(Xr, red.objective, 1.0, 0.1, r=R, **kw)
    np.testing.assert_allclose(pb.S, pa.S, rtol=1e-10)
    # the reduced directions are the full ones written in (first K coordinates, Q's columns)
    lifted = jnp.concatenate([pb.V[:K], Q @ pb.V[K:]])
    np.testing.assert_allclose(lifted @ lifted.T, pa.V @ pa.V.T, atol=1e-9)
    o = make_optimizer("gd", 0.1)
    c = 1 / math.sqrt(3)
    a = _run(full, LoraParams(jnp.zeros((M_, R)), c * pa.V), "classic", o)
    b = _run(red, LoraParams(jnp.zeros((K, R)), c * pb.V), "classic", o)
    np.testing.assert_allclose(b.curves["loss"], a.curves["loss"], rtol=1e-10, atol=1e-13)


def _cfg(**kw):
    base = dict(
        problem=ProblemSpec(m=40, n=48, spectrum="rank:6"),
        lora=H.LoraSpec(r=2),
        train=H.TrainSpec(lr=0.5, steps=60),
        inits=("gaussian", "aligned", "hrp"),
        base="gaussian",
        hrp=H.HrpSpec(rank=8, steps=10),
        seeds=8,
    )
    return H.ExperimentConfig(**(base | kw))


def test_auto_picks_the_reduced_basis_where_it_is_exact():
    assert resolve_basis(_cfg()) == Basis("reduced", 6, 6, 14)
    assert resolve_basis(_cfg(lora=H.LoraSpec(r=2, form="freeze-b"), inits=("gaussian",))) == Basis(
        "reduced", 6, 8, 6
    )
    for kw, why in [
        ({"inits": ("gaussian", "pissa")}, "pissa"),
        ({"inits": ("gaussian", "eva")}, "eva"),
        ({"problem": ProblemSpec(m=40, n=48, spectrum="rank:6", sigma="power:1")}, "Σ ≠ I"),
        ({"problem": ProblemSpec(m=40, n=48, spectrum="rank:1")}, "rank k = 1 is below r = 2"),
        ({"problem": ProblemSpec(m=40, n=48, spectrum="power:1")}, "nothing to reduce"),
        ({"lora": H.LoraSpec(r=2, form="freeze-b")}, "freeze-b"),
    ]:
        impossible, _ = reduced_obstacles(_cfg(**kw))
        assert any(why in x for x in impossible), (kw, impossible)
        assert resolve_basis(_cfg(**kw)).kind != "reduced"
        with pytest.raises(ValueError, match="basis: the reduced basis cannot run"):
            _cfg(basis="reduced", **kw)
    with pytest.warns(UserWarning, match="NOT exact.*kaiming"):
        _cfg(basis="reduced", base="kaiming", inits=("kaiming",))


@pytest.mark.slow
def test_reduced_and_spectral_runs_agree_in_distribution():
    """300 seeds each, classic GD: every init's mean final loss within 4 combined SE."""
    cfg = _cfg(seeds=300)
    a = H.run_experiment(dataclasses.replace(cfg, basis="reduced"), progress=False)
    b = H.run_experiment(dataclasses.replace(cfg, basis="spectral"), progress=False)
    for name in cfg.inits:
        x, y = a.per_seed[name]["final_loss"], b.per_seed[name]["final_loss"]
        se = math.hypot(x.std(ddof=1), y.std(ddof=1)) / math.sqrt(len(x))
        assert abs(x.mean() - y.mean()) <= 4 * se + 1e-12, (name, x.mean(), y.mean(), se)


@pytest.mark.slow
def test_bartlett_draw_reproduces_the_theory_at_width_100000():
    """n = m = 10⁵, rank-8 power target, r = 4, 1000 seeds, A frozen: the random endpoint is
    (1 − r/n)F, and HRP (converged freeze-A preheat, p = 64) lies between Theorem C's bounds — at
    a width where one dense seed would need 80 GB. With entry variance 1/(3n), AᵀA ≈ I/3 to
    1 % at this width, so 10 GD steps at lr 3 reach the limit to ~1e-19."""
    n, r, p = 100_000, 4, 64
    spec = ProblemSpec(m=n, n=n, spectrum="power:1", rank=8)
    cfg = H.ExperimentConfig(
        problem=spec,
        lora=H.LoraSpec(r=r, form="freeze-a"),
        train=H.TrainSpec(lr=3.0, steps=10, record_every=10),
        inits=("gaussian", "hrp"),
        base="gaussian",
        seeds=1000,
        hrp=H.HrpSpec(rank=p, steps="converged", form="freeze-a"),
    )
    assert resolve_basis(cfg) == Basis("reduced", 8, 8, 8 + p)
    sigma = np.r_[H.spectrum_values("power:1", 8), np.zeros(n - 8)]
    res = H.run_experiment(cfg, progress=False)
    R_rand = 2 * res.per_seed["gaussian"]["final_loss"]
    assert_mean_within(R_rand, theory.freeze_a_mean(sigma, n, r), what="(1 − r/n)F")
    lo, hi = theory.theorem_c_bounds(sigma, n, r, p)
    R_hrp = 2 * res.per_seed["hrp"]["final_loss"]
    se = R_hrp.std(ddof=1) / math.sqrt(R_hrp.size)
    assert lo - 3 * se <= R_hrp.mean() <= hi + 3 * se, (lo, R_hrp.mean(), hi, se)
