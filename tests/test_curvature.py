"""Lanczos on Hessian-vector products (``curvature.hessian_extremes``, what the end-to-end study
reports as λ_max and λ_min): against a quadratic of known spectrum and against the dense Hessian
of the synthetic core's LoRA loss (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from hrp_theory import curvature, problem_from_matrices
from hrp_theory.factors import LoraParams
from hrp_theory.losses import population_loss


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
    flat0, unravel = ravel_pytree(params)

    def loss(p):
        f, _ = ravel_pytree({k: p[k] for k in ("a", "b")})
        return 0.5 * f @ H @ f

    for k, tol in ((20, 1e-6), (60, 1e-9)):
        e = curvature.hessian_extremes(loss, params, jax.random.key(1), k)
        assert abs(float(e.lam_max) - 7.0) <= tol and abs(float(e.lam_min) + 3.0) <= tol
        for theta, res in ((e.lam_max, e.res_max), (e.lam_min, e.res_min)):
            assert np.min(np.abs(eigs - float(theta))) <= float(res) + 1e-9
    assert flat0.shape == (60,)


def test_lanczos_matches_the_dense_hessian_of_the_synthetic_lora_loss():
    """At a LoRA init (B = 0, the Hessian indefinite: a ± pair from the B–A cross term) and after
    a perturbation: λ_max and λ_min of the whole (B, A) Hessian and of the B block alone (A held
    fixed, the freeze-A block) equal the dense Hessian's, with Lanczos run to full dimension."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 5))
    X = rng.standard_normal((40, 5))
    obj = problem_from_matrices(M, Sigma=X.T @ X / 40).objective
    A = jnp.asarray(rng.standard_normal((5, 2)) / np.sqrt(5))
    for B in (jnp.zeros((6, 2)), jnp.asarray(0.3 * rng.standard_normal((6, 2)))):
        params = {"B": B, "A": A}
        loss = lambda p: population_loss(LoraParams(B=p["B"], A=p["A"]), obj, 1.0)
        flat, unravel = ravel_pytree(params)
        dense = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))
        e = curvature.hessian_extremes(loss, params, jax.random.key(0), flat.size)
        np.testing.assert_allclose([e.lam_max, e.lam_min], [dense[-1], dense[0]], atol=1e-9)
        HB = jax.hessian(lambda b: loss({"B": b.reshape(6, 2), "A": A}))(B.ravel())
        block = np.linalg.eigvalsh(np.asarray(HB))
        eb = curvature.hessian_extremes(loss, params, jax.random.key(0), 12, block=("B",))
        np.testing.assert_allclose([eb.lam_max, eb.lam_min], [block[-1], block[0]], atol=1e-9)
    assert dense[0] < 0 < dense[-1]  # indefinite: the sign of the extreme matters
