"""Lanczos on Hessian-vector products (``curvature.hessian_extremes``, what the end-to-end study
reports as λ_max and λ_min): against a quadratic of known spectrum and against the dense Hessian
of the synthetic core's LoRA loss (float64); the power iteration and ``lam_max_exact`` too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from hrp_theory import curvature, problem_from_matrices
from hrp_theory.factors import LoraParams
from hrp_theory.losses import population_loss


def _lora_problem():
    """A 6×5 target, anisotropic Σ, a random A, and two B's: 0 (a LoRA init) and a random one."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 5))
    X = rng.standard_normal((40, 5))
    obj = problem_from_matrices(M, Sigma=X.T @ X / 40).objective
    A = jnp.asarray(rng.standard_normal((5, 2)) / np.sqrt(5))
    return obj, A, (jnp.zeros((6, 2)), jnp.asarray(0.3 * rng.standard_normal((6, 2))))


def _dense_eigs(loss, params):
    """Eigenvalues of the dense Hessian of ``loss`` over the flattened ``params``."""
    flat, unravel = ravel_pytree(params)
    return np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))


def _quadratic(eigs, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(eigs), len(eigs))))
    return jnp.asarray(Q @ np.diag(eigs) @ Q.T)


def test_lanczos_finds_both_ends_of_a_known_spectrum_with_honest_residuals():
    """60 parameters in a pytree of two leaves, eigenvalues −3 and 7 isolated from a bulk in
    [−1, 3]: 20 steps give both ends to 1e-6, and each residual bounds the distance to the
    nearest true eigenvalue (the Ritz bound); with 60 steps (the whole space) they are exact."""
    eigs = np.concatenate([[-3.0, 7.0], np.linspace(-1.0, 3.0, 58)])
    H = _quadratic(eigs)
    params = {"a": jnp.zeros(30), "b": jnp.zeros((5, 6))}

    def loss(p):
        f, _ = ravel_pytree({k: p[k] for k in ("a", "b")})
        return 0.5 * f @ H @ f

    for k, tol in ((20, 1e-6), (60, 1e-9)):
        e = curvature.hessian_extremes(loss, params, jax.random.key(1), k)
        assert abs(float(e.lam_max) - 7.0) <= tol and abs(float(e.lam_min) + 3.0) <= tol
        for theta, res in ((e.lam_max, e.res_max), (e.lam_min, e.res_min)):
            assert np.min(np.abs(eigs - float(theta))) <= float(res) + 1e-9


def test_lanczos_matches_the_dense_hessian_of_the_synthetic_lora_loss():
    """At a LoRA init (B = 0, the Hessian indefinite: a ± pair from the B–A cross term) and after
    a perturbation: λ_max and λ_min of the whole (B, A) Hessian and of the B block alone (A held
    fixed, the freeze-A block, whose two distinct eigenvalues make Lanczos break down early)
    equal the dense Hessian's, with Lanczos run to full dimension."""
    obj, A, Bs = _lora_problem()
    loss = lambda p: population_loss(LoraParams(B=p["B"], A=p["A"]), obj, 1.0)
    for B in Bs:
        params = {"B": B, "A": A}
        dense = _dense_eigs(loss, params)
        e = curvature.hessian_extremes(loss, params, jax.random.key(0), dense.size)
        np.testing.assert_allclose([e.lam_max, e.lam_min], [dense[-1], dense[0]], atol=1e-9)
        block = _dense_eigs(lambda q: loss({"B": q["B"], "A": A}), {"B": B})
        eb = curvature.hessian_extremes(loss, params, jax.random.key(0), block.size, block=("B",))
        np.testing.assert_allclose([eb.lam_max, eb.lam_min], [block[-1], block[0]], atol=1e-9)
    assert dense[0] < 0 < dense[-1]  # indefinite: the sign of the extreme matters


def test_power_iteration_finds_the_exact_hessian_top_eigenvalue():
    """``lam_max_exact`` is the dense Hessian's top eigenvalue, the power iteration converges to
    the eigenvalue of largest magnitude (with its sign), and GD's threshold is 2/λ_max."""
    obj, A, Bs = _lora_problem()
    loss = lambda p: population_loss(p, obj, 1.0)
    for B in Bs:
        params = LoraParams(B=B, A=A)
        eig = _dense_eigs(loss, params)
        exact = float(curvature.lam_max_exact(params, obj, 1.0))
        assert exact == pytest.approx(eig[-1], rel=1e-10)
        power = float(curvature.lam_max_power(loss, params, jax.random.key(0), 300))
        assert power == pytest.approx(eig[np.argmax(np.abs(eig))], rel=1e-6)
        assert float(curvature.stability_lr(exact)) == pytest.approx(2 / exact)
    assert float(curvature.stability_lr(-1.0)) == np.inf
