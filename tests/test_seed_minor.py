"""The seed-minor layout (hrp_theory/layout.py): a vmapped batch of small runs laid out with the
seed axis last gives the vmapped (seed-major) run's numbers, seed by seed."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hrp_theory as H
from hrp_theory import devices, layout
from hrp_theory.dynamics import make_optimizer, train
from hrp_theory.experiment import run_experiment, seed_plan
from hrp_theory.factors import LoraParams
from hrp_theory.losses import small_matmul
from hrp_theory.problems import Basis, ProblemSpec, problem_arrays, reduced_problem


def test_small_matmul_treats_trailing_axes_as_batch():
    k = jax.random.split(jax.random.key(0), 2)
    x, y = jax.random.normal(k[0], (5, 3, 7)), jax.random.normal(k[1], (3, 4, 7))
    want = jnp.einsum("iks,kjs->ijs", x, y)
    np.testing.assert_allclose(small_matmul(x, y), want, rtol=1e-12)
    one_y = jnp.einsum("iks,kj->ijs", x, y[..., 0])  # an unbatched right factor
    np.testing.assert_allclose(small_matmul(x, y[..., 0]), one_y, rtol=1e-12)
    np.testing.assert_allclose(small_matmul(x[..., 0], y[..., 0]), want[..., 0], rtol=1e-12)


@pytest.mark.parametrize("form", ["classic", "freeze-a", "freeze-b"])
@pytest.mark.parametrize("optimizer", ["gd", "sgd", "flow"])
def test_vmapped_train_runs_seed_minor_and_matches_one_seed_at_a_time(form, optimizer):
    """``jax.vmap(train)`` over 16 seeds of a reduced problem takes the seed-minor branch and
    returns, seed by seed, what an unbatched run returns (factors, curves, snapshot)."""
    spec = ProblemSpec(m=64, n=64, spectrum="values:1,0.8,0.5,0.3,0.2")
    obj = reduced_problem(problem_arrays(spec), Basis("reduced", 5, 13, 13)).objective
    S, r = 16, 3
    A = 0.3 * jax.random.normal(jax.random.key(1), (S, 13, r))
    B = 0.2 * jax.random.normal(jax.random.key(2), (S, 13, r))
    if form == "classic":
        B = jnp.zeros_like(B)
    opt = make_optimizer(optimizer, 0.1, momentum=0.9)  # sgd: heavy ball
    kw = dict(form=form, opt=opt, steps=30, record_every=5, snapshot_step=12)
    one = lambda b, a: train(LoraParams(b, a), obj, 1.0, **kw)
    before = layout.SEEDS_LAST_TRACES
    got = jax.jit(jax.vmap(one))(B, A)
    assert before + 1 == layout.SEEDS_LAST_TRACES  # the seed-minor branch ran
    for i in (0, 7, 15):
        want = jax.jit(one)(B[i], A[i])
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g[i], w, rtol=1e-10, atol=1e-13)


def test_an_observed_small_run_records_its_factors_and_observes_them_afterwards():
    """With ``observe``, a small run keeps its factors at each record (seed-minor when batched)
    and observes them after the loop: the curves of a vmapped batch are, seed by seed, those of
    an unbatched run, and those of a run that observes inside its loop (a dense target)."""
    spec = ProblemSpec(m=64, n=64, spectrum="values:1,0.8,0.5,0.3,0.2")
    pb = reduced_problem(problem_arrays(spec), Basis("reduced", 5, 13, 13))
    obj = pb.objective
    S, r = 16, 3
    A = 0.3 * jax.random.normal(jax.random.key(1), (S, 13, r))
    B = jnp.zeros((S, 13, r))
    observe = lambda p: {"gram": p.B.T @ p.B - p.A.T @ p.A, "norm": jnp.linalg.norm(p.A)}
    kw = dict(form="classic", opt=make_optimizer("flow", 0.05), steps=40, record_every=8)
    one = lambda b, a: train(LoraParams(b, a), obj, 1.0, observe=observe, **kw).curves
    before = layout.SEEDS_LAST_TRACES
    got = jax.jit(jax.vmap(one))(B, A)
    assert before + 1 == layout.SEEDS_LAST_TRACES  # the seed-minor branch ran
    dense = H.Objective(C=pb.M)  # not a diagonal target: observed inside the loop
    for i in (0, 9):
        want = jax.jit(one)(B[i], A[i])
        inside = train(LoraParams(B[i], A[i]), dense, 1.0, observe=observe, **kw).curves
        assert want["gram"].shape == (6, r, r)
        for name in want:
            np.testing.assert_allclose(got[name][i], want[name], rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(inside[name], want[name], rtol=1e-10, atol=1e-13)


def test_a_spectral_program_up_to_small_dim_is_batched_and_a_dense_one_is_not():
    """``devices.width``: a diagonal target (spectral, reduced) has a width, a dense one none;
    small ones run in batches of ``SMALL_BATCH`` on a CPU, seed-minor only up to
    ``SEEDS_LAST_DIM``; YNNPACK's fusion is off for small programs and narrow dense ones."""
    assert devices.width(Basis("spectral"), 48, 64) == 64
    assert devices.width(Basis("reduced", 5, 13, 24), 4096, 4096) == 24
    assert devices.width(Basis("dense"), 48, 64) is None
    spectral = devices.plan(256, width=64, devices=1)
    assert spectral.batch == devices.SMALL_BATCH and not spectral.seeds_last
    assert devices.plan(256, width=24, devices=1).seeds_last
    assert devices.plan(256, width=devices.SMALL_DIM + 1, devices=1).batch == 1
    assert devices.plan(256, width=None, devices=1).batch == 1
    assert devices.compiler_options(None) is None
    # a dense program is compiled without YNNPACK's fusion only up to DENSE_XLA_FUSION_DIM wide
    no_ynn = {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert devices.compiler_options(None, devices.DENSE_XLA_FUSION_DIM) == no_ynn
    assert devices.compiler_options(None, devices.DENSE_XLA_FUSION_DIM + 1) is None
    assert devices.compiler_options(64, 4096) == no_ynn  # a small program whatever its extent


def _config(form, optimizer, momentum=0.0):
    return H.ExperimentConfig(
        problem=H.ProblemSpec(m=128, n=96, spectrum="power:1", rank=6),
        lora=H.LoraSpec(r=3, form=form),
        train=H.TrainSpec(optimizer=optimizer, lr=0.1, steps=20, momentum=momentum),
        hrp=H.HrpSpec(rank=8, steps=10),
        inits=("gaussian", "aligned", "hrp"),
        base="gaussian",
        seeds=32,
        basis="reduced",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "form, optimizer, momentum", [("classic", "gd", 0.0), ("freeze-a", "sgd", 0.9)]
)
def test_an_experiment_gives_the_same_seeds_in_either_layout(form, optimizer, momentum):
    """A whole experiment (problem, inits with HRP's preheat-then-SVD, training, the metrics) in
    batches of 8 seeds (seed-major) and of 16 (seed-minor): every per-seed array agrees (GD and
    heavy ball; freeze-B and every optimizer of ``train`` itself: the test above)."""
    cfg = _config(form, optimizer, momentum)
    major = dataclasses.replace(cfg, batch_size=8, chunk_size=32)
    minor = dataclasses.replace(cfg, batch_size=16, chunk_size=32)
    assert "seed-major" in seed_plan(major) and "seed-minor" in seed_plan(minor)
    a = run_experiment(major, progress=False).per_seed
    before = layout.SEEDS_LAST_TRACES
    b = run_experiment(minor, progress=False).per_seed
    assert before < layout.SEEDS_LAST_TRACES
    assert a.keys() == b.keys()
    for name in a:
        for field in a[name]:
            np.testing.assert_allclose(
                b[name][field], a[name][field], rtol=1e-9, atol=1e-12, err_msg=f"{name} {field}"
            )


def test_the_default_plan_of_a_small_program_is_seed_minor_on_cpu():
    cfg = dataclasses.replace(_config("classic", "gd"), seeds=4096)
    plan = seed_plan(cfg)
    assert f"batches of {devices.SMALL_BATCH}" in plan and "seed-minor" in plan
    assert "reduced basis" in plan
    dense = dataclasses.replace(cfg, basis="dense", seeds=4)
    assert "seed-major" in seed_plan(dense)
