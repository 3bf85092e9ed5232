"""The spectral fast path: the dense problem ``M = U diag(σ) Vᵀ`` and the diagonal one agree seed
by seed, to 1e-10 in float64, once the init is rotated (``B' = UᵀB``, ``A' = VᵀA``)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import config

from hrp_theory import LoraParams, Objective, cli, preheat_then_svd, run_experiment, train
from hrp_theory.dynamics import make_optimizer
from hrp_theory.losses import DiagonalC, factor_grads, population_loss
from hrp_theory.problems import haar_orthogonal
from hrp_theory.stats import summarize

M_, N_ = 12, 9


def _pair(seed=0, m=M_, n=N_):
    """Dense and diagonal objectives of the same target, and the rotations U (m×m), V (n×n)."""
    ku, kv = jax.random.split(jax.random.key(seed))
    U, V = haar_orthogonal(ku, m), haar_orthogonal(kv, n)
    k = min(m, n)
    S = jnp.linspace(2.0, 0.2, k) ** 2
    M = (U[:, :k] * S) @ V[:, :k].T
    return Objective(C=M, Mt=M), Objective(C=DiagonalC.of(S, m, n)), U, V


def _init(seed=1, r=3, m=M_, n=N_):
    kb, ka = jax.random.split(jax.random.key(seed))
    return LoraParams(B=0.3 * jax.random.normal(kb, (m, r)), A=0.3 * jax.random.normal(ka, (n, r)))


def _rotate(p: LoraParams, U, V) -> LoraParams:
    return LoraParams(B=U.T @ p.B, A=V.T @ p.A)


def test_diagonal_operator_matches_its_dense_matrix():
    S = jnp.array([3.0, 2.0, 1.0])
    C = DiagonalC.of(S, 5, 4)
    dense = jnp.zeros((5, 4)).at[jnp.arange(3), jnp.arange(3)].set(S)
    X, Y = jnp.arange(8.0).reshape(4, 2), jnp.arange(10.0).reshape(5, 2)
    assert C.shape == (5, 4)
    np.testing.assert_array_equal(C @ X, dense @ X)
    np.testing.assert_array_equal(C.t_matmul(Y), dense.T @ Y)


def test_loss_and_gradients_commute_with_the_rotation():
    dense, diag, U, V = _pair()
    p = _init()
    q = _rotate(p, U, V)
    np.testing.assert_allclose(
        population_loss(q, diag, 0.7), population_loss(p, dense, 0.7), rtol=1e-12
    )
    gd, gs = factor_grads(p, dense, 0.7), factor_grads(q, diag, 0.7)
    np.testing.assert_allclose(U @ gs.B, gd.B, atol=1e-12)
    np.testing.assert_allclose(V @ gs.A, gd.A, atol=1e-12)


@pytest.mark.parametrize("form", ["classic", "freeze-a", "freeze-b"])
@pytest.mark.parametrize("opt", [("gd", 0.05, 0.0), ("sgd", 0.03, 0.9), ("flow", 0.05, 0.0)])
def test_dense_and_spectral_runs_agree_seed_by_seed(form, opt):
    name, lr, mom = opt
    dense, diag, U, V = _pair()
    for seed in range(3):
        p = _init(seed + 1)
        o = make_optimizer(name, lr, mom)
        rd = train(p, dense, 1.0, form=form, opt=o, steps=200, record_every=10)
        rs = train(_rotate(p, U, V), diag, 1.0, form=form, opt=o, steps=200, record_every=10)
        np.testing.assert_allclose(rs.curves["loss"], rd.curves["loss"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(U @ rs.params.B, rd.params.B, atol=1e-10)
        np.testing.assert_allclose(V @ rs.params.A, rd.params.A, atol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [
        dict(form="classic", steps=20),
        dict(form="freeze-a", steps="converged"),
        dict(form="classic", steps=20, two_sided=True),
    ],
)
def test_preheat_then_svd_agrees_up_to_the_rotation(kw):
    dense, diag, U, V = _pair()
    A_p = 0.3 * jax.random.normal(jax.random.key(5), (N_, 6))
    pd = preheat_then_svd(A_p, dense, 1.0, 0.05, r=3, **kw)
    ps = preheat_then_svd(V.T @ A_p, diag, 1.0, 0.05, r=3, **kw)
    np.testing.assert_allclose(ps.S, pd.S, rtol=1e-10)
    proj = lambda Q: Q @ Q.T
    np.testing.assert_allclose(proj(V @ ps.V), proj(pd.V), atol=1e-10)
    np.testing.assert_allclose(proj(U @ ps.U), proj(pd.U), atol=1e-10)


def test_auto_picks_spectral_only_where_exact():
    gauss = dict(inits=("gaussian", "aligned", "hrp"), base="gaussian")
    assert config(**gauss).spectral
    assert not config().spectral  # kaiming: not rotation-invariant
    assert not config(**gauss, optimizer="adam", lr=0.01).spectral  # per-coordinate scaling
    assert not config(**gauss, sigma="power:1").spectral
    assert not config(**gauss, basis="dense").spectral


def test_forcing_spectral_is_refused_where_impossible_and_warned_where_inexact(capsys):
    with pytest.raises(ValueError, match="Σ ≠ I"):
        config(inits=("gaussian",), base="gaussian", sigma="power:1", basis="spectral")
    with pytest.raises(ValueError, match="pissa"):
        config(inits=("gaussian", "pissa"), base="gaussian", basis="spectral")
    with pytest.raises(ValueError, match="finite-sample"):
        config(inits=("gaussian",), base="gaussian", n_samples=50, basis="spectral")
    with pytest.warns(UserWarning, match="NOT exact.*kaiming"):
        assert config(basis="spectral").spectral
    with pytest.raises(ValueError, match="basis: unknown 'diagonal'"):
        config(basis="diagonal")
    assert cli.main(["compare", "--basis", "spectral", "--sigma", "power:1", "--quiet"]) == 2
    assert "cannot run this config" in capsys.readouterr().err


@pytest.mark.slow
def test_spectral_and_dense_monte_carlo_agree_within_standard_errors():
    """Gaussian inits are rotation-invariant, so both bases sample the same distribution of runs:
    300 independent seeds each, means within 4 combined SE."""
    cfg = config(m=16, n=12, r=2, inits=("gaussian", "hrp"), base="gaussian", seeds=300, steps=60)
    res = {
        b: run_experiment(dataclasses.replace(cfg, basis=b), progress=False)
        for b in ("dense", "spectral")
    }
    for name in cfg.inits:
        a, b = (summarize(res[x].per_seed[name]["final_loss"]) for x in ("dense", "spectral"))
        assert abs(a["mean"] - b["mean"]) <= 4 * np.hypot(a["se"], b["se"]), name
