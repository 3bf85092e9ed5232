"""Init invariants, the thin SVD of a product, and the preheat routine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrp_theory import Objective, ProblemSpec, make_problem, peers, thin_svd_of_product
from hrp_theory.inits import INITS, InitHyper, InitStatic, draw, families_needed, initialize
from hrp_theory.losses import population_loss, shift_target
from hrp_theory.preheat import converged_freeze_a, preheat_then_svd


def _setup(form="classic", sigma="identity", m=9, n=7, r=2, p=4):
    pb = make_problem(jax.random.key(0), ProblemSpec(m=m, n=n, sigma=sigma))
    st = InitStatic(r=r, form=form, p=p, preheat_steps=5)
    f = lambda x: jnp.asarray(x, jnp.float64)
    hy = InitHyper(
        s=f(1.0),
        s_p=f(1.0),
        std=f(1 / np.sqrt(3 * n)),
        lr=f(0.1),
        lr_p=f(0.1),
        momentum=f(0.0),
        weight_decay=f(0.0),
    )
    draws = draw(jax.random.key(1), pb, st, hy, families_needed(INITS, "kaiming"))
    return pb, st, hy, draws


@pytest.mark.parametrize("form", ["classic", "freeze-a", "freeze-b"])
def test_direction_inits_start_from_zero_product(form):
    pb, st, hy, draws = _setup(form)
    for name in ("kaiming", "gaussian", "aligned", "aligned-sigma", "hrp"):
        params, dW0 = initialize(name, pb, st, hy, draws)
        assert dW0 is None
        zero = params.A if form == "freeze-b" else params.B
        assert float(jnp.abs(zero).max()) == 0.0, name
        assert float(jnp.abs(params.B @ params.A.T).max()) == 0.0


def test_kaiming_is_peft_default_and_nested_with_hrp():
    pb, st, hy, draws = _setup()
    A = np.asarray(draws.A["kaiming"])
    n = pb.M.shape[1]
    assert np.abs(A).max() <= 1 / np.sqrt(n)
    params, _ = initialize("kaiming", pb, st, hy, draws)
    np.testing.assert_array_equal(params.A, A[:, : st.r])  # the first r of HRP's A_p


@pytest.mark.parametrize("name", ["aligned", "hrp"])
def test_direction_columns_orthonormal_times_c(name):
    pb, st, hy, draws = _setup()
    A = np.asarray(initialize(name, pb, st, hy, draws)[0].A)
    np.testing.assert_allclose(A.T @ A, np.eye(st.r) / 3.0, atol=1e-12)  # c = 1/√3 (Kaiming)


@pytest.mark.parametrize("sigma", ["identity", "power:1:random"])
@pytest.mark.parametrize("name", ["pissa", "olora", "lora-ga", "corda"])
def test_offset_inits_leave_output_unchanged(name, sigma):
    pb, st, hy, draws = _setup(sigma=sigma)
    params, dW0 = initialize(name, pb, st, hy, draws)
    assert float(jnp.abs(params.B @ params.A.T).max()) > 0
    np.testing.assert_allclose(dW0 + hy.s * params.B @ params.A.T, 0, atol=1e-12)
    obj = shift_target(pb.objective, dW0)
    untouched = population_loss(params._replace(B=0 * params.B), pb.objective, hy.s)
    np.testing.assert_allclose(population_loss(params, obj, hy.s), untouched, rtol=1e-12)


def test_pissa_and_olora_reconstruct_w0():
    pb, st, hy, draws = _setup()
    p, dW0 = initialize("pissa", pb, st, hy, draws)
    U, S, Vt = np.linalg.svd(np.asarray(pb.W0))
    np.testing.assert_allclose(-dW0, (U[:, :2] * S[:2]) @ Vt[:2], atol=1e-12)
    p, dW0 = initialize("olora", pb, st, hy, draws)
    np.testing.assert_allclose(p.B.T @ p.B, np.eye(2), atol=1e-12)


def test_corda_is_pissa_of_w0_sigma():
    """CorDA: the adapter is the top-r part of W0Σ, mapped back by Σ⁻¹; with Σ = I, PiSSA."""
    pb, st, hy, draws = _setup()
    c, dc = initialize("corda", pb, st, hy, draws)
    p, dp = initialize("pissa", pb, st, hy, draws)
    np.testing.assert_allclose(dc, dp, rtol=1e-5, atol=1e-9)
    pb, st, hy, draws = _setup(sigma="power:1:random")
    c, dc = initialize("corda", pb, st, hy, draws)
    Sigma = np.asarray(pb.objective.Sigma)
    # PEFT's damping: Σ̃ = Σ + δI, δ = 1 % of the mean eigenvalue (accurate enough here at once)
    fixed = Sigma + 0.01 * np.trace(Sigma) / len(Sigma) * np.eye(len(Sigma))
    np.testing.assert_allclose(np.asarray(peers.corda_damped(jnp.asarray(Sigma))[0]), fixed)
    U, S, Vt = np.linalg.svd(np.asarray(pb.W0) @ fixed)
    np.testing.assert_allclose(
        -np.asarray(dc) @ fixed, (U[:, :2] * S[:2]) @ Vt[:2], rtol=1e-4, atol=1e-8
    )


def test_corda_damping_doubles_until_the_inverse_is_accurate():
    """PEFT's rule: δ doubles from 1 % of the mean eigenvalue until ‖Σ̃Σ̃⁻¹ − I‖_F < 0.05; a
    numerically singular Σ needs more than the first δ, a well-conditioned one does not."""
    well = jnp.asarray(np.diag([2.0, 1.0, 0.5]))
    np.testing.assert_allclose(
        np.asarray(peers.corda_damped(well)[0]),
        np.diag([2.0, 1.0, 0.5]) + 0.01 * (3.5 / 3) * np.eye(3),
    )
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2)).astype(np.float32)
    bad = jnp.asarray(X @ X.T * 1e6)  # rank 2 of 40, float32
    fixed, inv = peers.corda_damped(bad)
    err = float(jnp.linalg.norm(fixed @ inv - jnp.eye(40)))
    assert err < 0.05


def test_eva_follows_the_input_covariance():
    pb, st, hy, draws = _setup(sigma="power:1:random")
    A = np.asarray(initialize("eva", pb, st, hy, draws)[0].A)
    lam, Q = np.linalg.eigh(np.asarray(pb.objective.Sigma))
    top = Q[:, ::-1][:, :2]
    np.testing.assert_allclose(
        np.linalg.svd(top.T @ A, compute_uv=False), 1, atol=1e-10
    )  # col(A) = top-2 eigenvectors, unit-norm columns (PEFT's EVA components)


def test_lora_one_is_the_reference_codes_normalised_gradient_step():
    """LoRA-One's code (stable scale, γ = 128): ``BAᵀ = [C]_r/(γ·σ₁(C))``, factors split evenly,
    ``W0`` kept."""
    pb, st, hy, draws = _setup()
    p, dW0 = initialize("lora-one", pb, st, hy, draws)
    assert dW0 is None
    U, S, Vt = np.linalg.svd(np.asarray(pb.objective.C))
    want = (U[:, :2] * S[:2]) @ Vt[:2] / (128.0 * S[0])
    np.testing.assert_allclose(p.B @ p.A.T, want, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.norm(p.B, axis=0), np.sqrt(S[:2] / S[0] / 128.0), rtol=1e-10
    )


def test_aligned_sigma_is_sigma_optimal_for_frozen_a():
    """docs/theory.md §6: A = Σ^{-1/2}V_r(MΣ^{1/2}) attains Σ_{i>r} σ_i(MΣ^{1/2})²; V_r(M) does
    not."""
    pb, st, hy, draws = _setup(form="freeze-a", sigma="power:1.5:random", m=10, n=12, r=3)
    best = 0.5 * float(jnp.sum(pb.whitened.S[3:] ** 2))
    losses = {}
    for name in ("aligned-sigma", "aligned"):
        A = initialize(name, pb, st, hy, draws)[0].A
        B = converged_freeze_a(A, pb.objective, 1.0)
        losses[name] = float(population_loss((B, A), pb.objective, 1.0))
    assert losses["aligned-sigma"] == pytest.approx(best, rel=1e-10)
    assert losses["aligned"] > best * (1 + 1e-3)


def test_thin_svd_equals_dense_svd():
    kb, ka = jax.random.split(jax.random.key(3))
    B, A = jax.random.normal(kb, (30, 6)), jax.random.normal(ka, (20, 6))
    U, S, V = thin_svd_of_product(B, A, 3)
    Ud, Sd, Vdt = np.linalg.svd(np.asarray(B @ A.T))
    np.testing.assert_allclose(S, Sd[:3], rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.asarray(V).T @ Vdt[:3].T), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(np.abs(np.asarray(U).T @ Ud[:, :3]), np.eye(3), atol=1e-10)
    np.testing.assert_allclose((U * S) @ V.T, (Ud[:, :3] * Sd[:3]) @ Vdt[:3], atol=1e-10)


def test_converged_preheat_is_the_freeze_a_limit():
    pb = make_problem(jax.random.key(4), ProblemSpec(m=8, n=10))
    A = jax.random.normal(jax.random.key(5), (10, 5)) / np.sqrt(30)
    long = preheat_then_svd(A, pb.objective, 1.0, 2.0, r=2, form="freeze-a", steps=2000)
    exact = preheat_then_svd(A, pb.objective, 1.0, 2.0, r=2, form="freeze-a", steps="converged")
    np.testing.assert_allclose(long.params.B, exact.params.B, atol=1e-10)
    np.testing.assert_allclose(long.V, exact.V, atol=1e-8)


def test_long_classic_preheat_finds_top_directions():
    """As T_p → ∞ with σ_r > σ_{r+1}, the preheat's V̂_r → V_r (THEORY §5.4 regime 3)."""
    pb = make_problem(jax.random.key(6), ProblemSpec(m=8, n=10, spectrum="exp:1"))
    A = jax.random.normal(jax.random.key(7), (10, 6)) * 0.1
    pre = preheat_then_svd(A, Objective(C=pb.M), 1.0, 0.2, r=2, steps=3000)
    cos = np.linalg.svd(np.asarray(pre.V.T @ pb.target.V[:, :2]), compute_uv=False)
    np.testing.assert_allclose(cos, 1.0, atol=1e-8)
