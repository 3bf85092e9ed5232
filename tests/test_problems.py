import jax
import numpy as np
import pytest

from hrp_theory import ProblemSpec, make_problem, optimal_loss, problem_from_matrices
from hrp_theory.spectra import parse_sigma, spectrum_values


@pytest.mark.parametrize(
    "spec,expect",
    [
        ("power:1", [1, 1 / 2, 1 / 3, 1 / 4]),
        ("exp:2", np.exp(-np.arange(4) / 2)),
        ("rank:2", [1, 1, 0, 0]),
        ("spike:1", [1, 0.1, 0.1, 0.1]),
        ("spike:2:0.5", [1, 1, 0.5, 0.5]),
        ("flat", [1, 1, 1, 1]),
        ("values:0.5,2", [2, 0.5, 0, 0]),
    ],
)
def test_spectrum_families(spec, expect):
    np.testing.assert_allclose(spectrum_values(spec, 4), expect)


def test_rank_and_scale():
    np.testing.assert_allclose(spectrum_values("power:1", 5, rank=2, scale=3), [3, 1.5, 0, 0, 0])


def test_problem_matches_spec():
    spec = ProblemSpec(m=12, n=9, spectrum="power:1", rank=5, sigma="identity")
    pb = make_problem(jax.random.key(0), spec)
    s = np.linalg.svd(np.asarray(pb.M), compute_uv=False)
    np.testing.assert_allclose(s, spectrum_values("power:1", 9, rank=5), atol=1e-12)
    np.testing.assert_allclose(pb.target.U.T @ pb.target.U, np.eye(9), atol=1e-12)
    assert float(optimal_loss(pb, 2)) == pytest.approx(0.5 * sum(1 / i**2 for i in range(3, 6)))


def test_sigma_problem_whitened_svd_and_normalisation():
    spec = ProblemSpec(m=6, n=8, sigma="power:2:random")
    pb = make_problem(jax.random.key(1), spec)
    Sig = pb.objective.Sigma
    assert np.trace(Sig) == pytest.approx(8.0)
    np.testing.assert_allclose(pb.objective.sigma_half @ pb.objective.sigma_half, Sig, atol=1e-12)
    np.testing.assert_allclose(pb.sigma_inv_half @ pb.objective.sigma_half, np.eye(8), atol=1e-9)
    w = pb.whitened
    np.testing.assert_allclose((w.U * w.S) @ w.V.T, pb.M @ pb.objective.sigma_half, atol=1e-12)
    np.testing.assert_allclose(pb.objective.C, pb.M @ Sig, atol=1e-12)


def test_adversarial_sigma_puts_small_eigenvalues_on_top_directions():
    pb = make_problem(jax.random.key(2), ProblemSpec(m=5, n=7, sigma="power:1:adversarial"))
    v1 = pb.target.V[:, 0]
    lam = np.linalg.eigvalsh(np.asarray(pb.objective.Sigma))
    assert float(v1 @ pb.objective.Sigma @ v1) == pytest.approx(lam.min())


def test_w0_alignment_knob():
    spec = ProblemSpec(m=10, n=10, w0_align=1.0)
    pb = make_problem(jax.random.key(3), spec)
    U0 = np.linalg.svd(np.asarray(pb.W0))[0]
    # top-3 left subspaces coincide when fully aligned
    cos = np.linalg.svd(U0[:, :3].T @ np.asarray(pb.target.U[:, :3]), compute_uv=False)
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)


def test_finite_sample_statistics():
    spec = ProblemSpec(m=4, n=5, n_samples=50, noise=0.1)
    pb = make_problem(jax.random.key(4), spec)
    o = pb.objective
    np.testing.assert_allclose(o.Sigma, o.X.T @ o.X / 50, atol=1e-12)
    np.testing.assert_allclose(o.C, o.Y.T @ o.X / 50, atol=1e-12)


def test_problem_from_matrices_roundtrip():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(5, 6))
    X = rng.normal(size=(100, 6))
    pb = problem_from_matrices(M, Sigma=X.T @ X / 100)
    np.testing.assert_allclose(
        pb.objective.sigma_half @ pb.objective.sigma_half, X.T @ X / 100, atol=1e-10
    )


def test_parse_sigma():
    assert parse_sigma("identity").identity
    s = parse_sigma("power:1.5:aligned")
    assert (s.beta, s.basis) == (1.5, "aligned")
