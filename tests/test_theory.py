"""Closed forms of theory.py against independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from hrp_theory import spectrum_values, theory
from hrp_theory.problems import problem_from_matrices


def test_energies_and_theory_reference_values():
    """THEORY §2/§8 reference numbers for the power spectrum (m=48, n=64, r=4). THEORY prints
    F = 1.62433 and T_4 = 0.20072, rounded: the exact sums are 1.624316 and 0.200705."""
    s = spectrum_values("power:1", 48)
    F, E, T = theory.energies(s, 4)
    exact = [sum(1 / i**2 for i in range(a, b)) for a, b in ((1, 49), (1, 5), (5, 49))]
    assert pytest.approx(exact, rel=1e-14) == (F, E, T)
    assert theory.freeze_a_mean(s, 64, 4) == pytest.approx(1.52280, abs=1e-5)
    assert theory.freeze_a_variance(s, 64, 4) == pytest.approx(1.878e-3, rel=1e-3)
    assert theory.theorem_c_bounds(s, 64, 4, 16) == pytest.approx((1.21824, 1.25838), abs=1e-5)
    assert theory.hmt_bound(s, 4, 16) == pytest.approx(0.2737, abs=1e-4)


def test_theorem_c_is_tight_at_the_ends():
    s = spectrum_values("power:1", 48)
    lo, hi = theory.theorem_c_bounds(s, 64, 4, 4)
    assert lo == pytest.approx(theory.freeze_a_mean(s, 64, 4), rel=1e-14)
    assert hi == pytest.approx(lo, rel=1e-14)
    T = theory.energies(s, 4)[2]
    assert theory.theorem_c_bounds(s, 64, 4, 64) == pytest.approx((T, T), rel=1e-12)
    with pytest.raises(ValueError, match="p"):
        theory.theorem_c_bounds(s, 64, 4, 2)


def test_aligned_classic_time_solves_the_scalar_ode():
    """t(x) from row 9 against scipy's integration of dx/dt = (σ − x)√(ε⁴ + 4x²)."""
    sigma, eps = 0.8, 1e-2
    sol = integrate.solve_ivp(
        lambda t, x: (sigma - x) * np.sqrt(eps**4 + 4 * x**2),
        (0, 12),
        [0.0],
        t_eval=[3.0, 6.0, 9.0, 12.0],
        rtol=1e-12,
        atol=1e-15,
    )
    x = theory.aligned_classic_x(sol.t, sigma, eps)
    np.testing.assert_allclose(x, sol.y[0], rtol=1e-7)
    np.testing.assert_allclose(theory.aligned_classic_time(x, sigma, eps), sol.t, rtol=1e-9)


def test_trace_exp_wishart_limits():
    mean, se = theory.trace_exp_wishart(64, 4, 0.1, [0.0, 1e6], draws=2000)
    assert mean[0] == pytest.approx(4.0) and mean[1] == pytest.approx(0.0, abs=1e-12)


def test_classic_linear_phase_solves_the_linearised_flow():
    """d/dt (B, A) = (M A, Mᵀ B) (the flow with the cubic terms dropped)."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 5))
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    A0 = rng.standard_normal((5, 3))
    f = lambda t: theory.classic_linear_phase(
        jnp.asarray(U), jnp.asarray(S), jnp.asarray(Vt.T), jnp.asarray(A0), t
    )
    dB, dA = jax.jacfwd(f)(0.7)
    B, A = f(0.7)
    np.testing.assert_allclose(dB, M @ A, atol=1e-10)
    np.testing.assert_allclose(dA, M.T @ B, atol=1e-10)


def test_sigma_aware_optimum_agrees_with_the_library():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((7, 6))
    X = rng.standard_normal((200, 6)) * np.linspace(0.2, 3, 6)
    Sigma = X.T @ X / 200
    A_opt, R_opt = theory.sigma_aware_optimum(M, Sigma, 2)
    pb = problem_from_matrices(M, Sigma=Sigma)
    assert R_opt == pytest.approx(float(jnp.sum(pb.whitened.S[2:] ** 2)), rel=1e-10)
    # the residual of the frozen A* under the Σ-oblique limit equals R_opt
    B = M @ Sigma @ A_opt @ np.linalg.inv(A_opt.T @ Sigma @ A_opt)
    D = (M - B @ A_opt.T) @ np.asarray(pb.objective.sigma_half)
    assert float((D**2).sum()) == pytest.approx(R_opt, rel=1e-9)


def test_rank1_weights_sum_to_one_and_isotropic_case():
    w = theory.anisotropic_rank1_weights(np.ones(5))
    np.testing.assert_allclose(w, 0.2, rtol=1e-8)
    w = theory.anisotropic_rank1_weights([3.0, 1.0, 0.1])
    assert w.sum() == pytest.approx(1.0, abs=1e-8) and w[0] > w[1] > w[2]


def test_wishart_draws_have_the_wishart_mean():
    """E ZᵀZ = dof·I; 20 000 draws, each entry within 4 SE."""
    rng = np.random.default_rng(3)
    W = theory.wishart_draws(rng, 20_000, 3, 7)
    se = W.std(0, ddof=1) / np.sqrt(W.shape[0])
    assert np.all(np.abs(W.mean(0) - 7 * np.eye(3)) <= 4 * se + 1e-12)
    with pytest.raises(ValueError, match="dof"):
        theory.wishart_draws(rng, 2, 3, 2)


def test_hrp_residual_draws_match_the_closed_forms():
    """p = r is the random init, E R = (1 − r/n)F (4 SE, 20 000 draws); p = n is optimal (T_r,
    every draw); rank-1 M: the Beta((n − p)/2, p/2) mean (4 SE); Theorem C's bounds (3 SE).
    A rank-8 power target at n = 64."""
    sigma, n, r = spectrum_values("power:1", 8), 64, 4
    F, _, T = theory.energies(sigma, r)
    x = theory.hrp_residual_draws(sigma, n, r, r, 20_000, seed=1)
    assert abs(x.mean() - theory.freeze_a_mean(sigma, n, r)) <= 4 * x.std(ddof=1) / np.sqrt(x.size)
    np.testing.assert_allclose(theory.hrp_residual_draws(sigma, n, r, n, 50), T, rtol=1e-10)
    y = theory.hrp_residual_draws([1.0], 50, 1, 10, 20_000, seed=2)
    assert abs(y.mean() - theory.rank1_law(50, 10).mean()) <= 4 * y.std(ddof=1) / np.sqrt(y.size)
    for p in (8, 16, 32):
        z = theory.hrp_residual_draws(sigma, n, r, p, 20_000, seed=p)
        lo, hi = theory.theorem_c_bounds(sigma, n, r, p)
        se = z.std(ddof=1) / np.sqrt(z.size)
        assert lo - 3 * se <= z.mean() <= hi + 3 * se, (p, z.mean(), lo, hi)
    with pytest.raises(ValueError, match="p"):
        theory.hrp_residual_draws(sigma, n, r, n + 1)


@pytest.mark.slow
def test_hrp_residual_draws_agree_with_the_simulated_preheat():
    """The width-free law against the simulator's own preheat-then-SVD runs (verify check 3's
    seed function, dense problems, 1 000 seeds) at m = 48, n = 64: means within 4 combined SE."""
    from hrp_theory.problems import Basis, ProblemSpec, problem_arrays
    from hrp_theory.seeds import map_seeds
    from hrp_theory.verify.hrp import hrp_residuals

    sigma, ps = spectrum_values("power:1", 48), (8, 32)
    spec = ProblemSpec(m=48, n=64, spectrum="power:1")
    sim = map_seeds(
        hrp_residuals,
        (ProblemSpec(m=48, n=64), Basis("dense"), ps),
        problem_arrays(spec),
        seeds=1000,
        progress=False,
    ).out["R"]
    for j, p in enumerate(ps):
        z = theory.hrp_residual_draws(sigma, 64, 4, p, 20_000, seed=p)
        se = np.hypot(sim[:, j].std(ddof=1) / np.sqrt(1000), z.std(ddof=1) / np.sqrt(z.size))
        assert abs(sim[:, j].mean() - z.mean()) <= 4 * se, (p, sim[:, j].mean(), z.mean(), se)
