"""THEORY §8 checks 1–3, in float64 at the canonical sizes m=48, n=64, r=4.

Values are R = ‖M − BAᵀ‖² = 2·loss. Expectation checks pass if |MC − prediction| ≤ 4·SE (SE from
the same sample: a false failure has probability ≈ 6e-5 per check); pathwise identities use a
relative tolerance of 1e-8.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrp_theory import HrpSpec, Objective, run_experiment, spectrum_values
from hrp_theory.preheat import preheat_then_svd
from hrp_theory.problems import ProblemSpec, make_problem

from helpers import assert_mean_within, config

M_, N_, R_ = 48, 64, 4


def energies(spectrum):
    s = spectrum_values(spectrum, min(M_, N_))
    return (s**2).sum(), (s[:R_]**2).sum(), (s[R_:]**2).sum()


def asym(spectrum, form, inits, seeds, **kw):
    # GD with lr 1.5 contracts every mode of AᵀA (eigenvalues ≈ 0.19…0.52 for Kaiming/Gaussian
    # A of entry variance 1/(3n)) by ≤ 0.75 per step: 300 steps reach the limit to < 1e-30.
    return config(m=M_, n=N_, r=R_, spectrum=spectrum, form=form, inits=inits, steps=300, lr=1.5,
                  seeds=seeds, record_every=300, batch_size=8, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("spectrum,seeds", [("power:1", 2000), ("rank:1", 1000), ("exp:3", 1000),
                                            ("rank:8", 1000)])
def test_check1_random_asymmetric_mean(spectrum, seeds):
    """E R_∞ = (1 − r/n) F for Kaiming-uniform and Gaussian A (THEORY §3.2)."""
    F, _, _ = energies(spectrum)
    res = run_experiment(asym(spectrum, "freeze-a", ("kaiming", "gaussian"), seeds), progress=False)
    for init in ("kaiming", "gaussian"):
        R = 2 * res.per_seed[init]["final_loss"]
        assert_mean_within(R, (1 - R_ / N_) * F, what=f"{spectrum} {init}")


@pytest.mark.slow
def test_check1_mirror_freeze_b_mean():
    """B frozen random, A trained: E R_∞ = (1 − r/m) F = 1.48896 for the power spectrum."""
    F, _, _ = energies("power:1")
    assert (1 - R_ / M_) * F == pytest.approx(1.48896, abs=1e-5)
    res = run_experiment(asym("power:1", "freeze-b", ("kaiming",), 2000), progress=False)
    assert_mean_within(2 * res.per_seed["kaiming"]["final_loss"], (1 - R_ / M_) * F)


def test_check1_endpoint_is_M_PA():
    """After training B to convergence with A frozen, ‖BAᵀ − M P_A‖ ≤ 1e-8 ‖M‖."""
    from hrp_theory import LoraParams, make_optimizer, train

    pb = make_problem(jax.random.key(0), ProblemSpec(m=M_, n=N_), with_w0=False)
    A = jax.random.normal(jax.random.key(1), (N_, R_)) / jnp.sqrt(3 * N_)
    lam = jnp.linalg.eigvalsh(A.T @ A)
    eta = 2.0 / (lam[0] + lam[-1])  # optimal GD step, < 2/λ_max
    out = train(LoraParams(jnp.zeros((M_, R_)), A), pb.objective, 1.0, form="freeze-a",
                opt=make_optimizer("gd", eta), steps=400)
    Q = jnp.linalg.qr(A)[0]
    err = jnp.linalg.norm(out.params.B @ A.T - pb.M @ Q @ Q.T)
    assert float(err) <= 1e-8 * float(jnp.linalg.norm(pb.M))


def test_check2_aligned_endpoint_and_gd_curve():
    """A = c·V_r: R_k = T_r + (1 − η c²)^{2k} E_r exactly under GD, → T_r (the optimum)."""
    _, E, T = energies("power:1")
    lr, steps = 0.9, 120
    res = run_experiment(config(m=M_, n=N_, r=R_, spectrum="power:1", form="freeze-a",
                                inits=("aligned",), steps=steps, lr=lr, seeds=3, record_every=1),
                         progress=False)
    c2 = 1.0 / 3.0  # column norm² of the Kaiming init the direction replaces
    k = np.arange(steps + 1)
    predicted = T + (1 - lr * c2) ** (2 * k) * E
    R = 2 * res.per_seed["aligned"]["loss_curve"]
    np.testing.assert_allclose(R, np.broadcast_to(predicted, R.shape), rtol=1e-8)
    np.testing.assert_allclose(R[:, -1], T, rtol=1e-10)


def _hrp_paths(spectrum, ps, seeds=200):
    """R_HRP(p) for nested A_p (first p columns of one Gaussian n×n), freeze-a preheat converged.

    Square m = n = 64 here: p may not exceed min(m, n), and the p = n identity needs p = n.
    """
    spec = ProblemSpec(m=N_, n=N_, spectrum=spectrum)

    def one(key):
        kp, ka = jax.random.split(key)
        pb = make_problem(kp, spec, with_w0=False)
        A = jax.random.normal(ka, (N_, N_))
        out = []
        for p in ps:
            pre = preheat_then_svd(A[:, :p], Objective(C=pb.M), 1.0, 0.1, r=R_, form="freeze-a",
                                   steps="converged")
            out.append(jnp.sum((pb.M - pb.M @ pre.V @ pre.V.T) ** 2))
        Q = jnp.linalg.qr(A[:, :R_])[0]
        rand = jnp.sum((pb.M - pb.M @ Q @ Q.T) ** 2)
        return jnp.stack(out), rand

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(7), i))(jnp.arange(seeds))
    R, rand = jax.lax.map(one, keys, batch_size=8)  # ≤ 8: see CPU_MAX_BATCH
    return np.asarray(R), np.asarray(rand)


def test_check3_hrp_exact_identities():
    """p = r equals random with the same A; p = n is optimal; R_HRP(p) non-increasing in p."""
    ps = [4, 6, 8, 16, 32, 48, 64]
    R, rand = _hrp_paths("power:1", ps)
    s = spectrum_values("power:1", N_)
    T = (s[R_:] ** 2).sum()
    np.testing.assert_allclose(R[:, 0], rand, rtol=1e-8)
    np.testing.assert_allclose(R[:, -1], T, rtol=1e-8)
    violations = np.diff(R, axis=1) > 1e-10
    assert violations.sum() == 0, f"{violations.sum()} monotonicity violations"


@pytest.mark.slow
def test_check3_through_the_runner_p_equals_r():
    """The runner's nested coupling: HRP with p = r (converged freeze-a preheat) ends where the
    Kaiming init it shares A with ends, seed by seed."""
    cfg = asym("power:1", "freeze-a", ("kaiming", "hrp"), 50,
               hrp=HrpSpec(rank=R_, steps="converged", form="freeze-a"))
    res = run_experiment(cfg, progress=False)
    np.testing.assert_allclose(res.per_seed["hrp"]["final_loss"],
                               res.per_seed["kaiming"]["final_loss"], rtol=1e-8)
