"""Factored gradients, optimisers and the GD closed form of the freeze-A run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrp_theory import (
    LoraParams,
    ProblemSpec,
    factor_grads,
    make_optimizer,
    make_problem,
    population_loss,
    train,
    train_loss,
)


@pytest.mark.parametrize("kw", [{}, {"sigma": "power:1"}, {"n_samples": 30, "noise": 0.2}])
def test_factored_gradients_match_autodiff(kw):
    pb = make_problem(jax.random.key(0), ProblemSpec(m=7, n=5, **kw))
    kb, ka = jax.random.split(jax.random.key(1))
    params = LoraParams(jax.random.normal(kb, (7, 3)), jax.random.normal(ka, (5, 3)))
    s = 0.7
    obj = pb.objective
    loss = (
        (lambda p: train_loss(p, obj, s))
        if obj.X is not None
        else (lambda p: population_loss(p, obj, s))
    )
    auto = jax.grad(loss)(params)
    mine = factor_grads(params, obj, s)
    np.testing.assert_allclose(mine.B, auto.B, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mine.A, auto.A, rtol=1e-10, atol=1e-12)


def test_gd_freeze_a_closed_form():
    """B_k = B_*(I − (I − ηG)^k) with B_* = M A G^{-1} (THEORY §3.1, discrete GD)."""
    pb = make_problem(jax.random.key(2), ProblemSpec(m=6, n=8))
    A = jax.random.normal(jax.random.key(3), (8, 3)) / 3
    G = A.T @ A
    eta, k = 0.5, 17
    out = train(
        LoraParams(jnp.zeros((6, 3)), A),
        pb.objective,
        1.0,
        form="freeze-a",
        opt=make_optimizer("gd", eta),
        steps=k,
    )
    B_star = pb.M @ A @ jnp.linalg.inv(G)
    expect = B_star @ (jnp.eye(3) - jnp.linalg.matrix_power(jnp.eye(3) - eta * G, k))
    np.testing.assert_allclose(out.params.B, expect, atol=1e-12)
    np.testing.assert_array_equal(out.params.A, A)


@pytest.mark.parametrize("opt", ["gd", "sgd", "adam", "adamw"])
def test_optimizers_decrease_loss_and_respect_frozen_factor(opt):
    pb = make_problem(jax.random.key(4), ProblemSpec(m=6, n=6))
    A = jax.random.normal(jax.random.key(5), (6, 2)) / 3
    p0 = LoraParams(jnp.zeros((6, 2)), A)
    out = train(
        p0,
        pb.objective,
        1.0,
        form="freeze-a",
        opt=make_optimizer(opt, 0.05, 0.5, 0.01),
        steps=50,
        record_every=10,
    )
    c = np.asarray(out.curves["loss"])
    assert c.shape == (6,) and c[-1] < c[0]
    np.testing.assert_array_equal(out.params.A, A)
