"""Seed invariance, compile counting, divergence and interruption handling of the runner."""

import dataclasses

import jax
import numpy as np
import pytest
from helpers import config

import hrp_theory.seeds as mc
from hrp_theory import root_key, run_experiment
from hrp_theory.simulate import simulate_seed, split_config

INITS = ("kaiming", "gaussian", "aligned", "hrp", "pissa", "olora", "lora-ga", "lora-one")


def _finals(res):
    return np.stack([res.per_seed[i]["final_loss"] for i in res.config.inits], axis=1)


@pytest.mark.slow
def test_seed_result_independent_of_seed_count_and_chunks():
    base = config(inits=INITS, seeds=12, chunk_size=12)
    ref = _finals(run_experiment(base, progress=False))
    for kw in ({"seeds": 5}, {"chunk_size": 1}, {"chunk_size": 7}, {"batch_size": 3}):
        other = _finals(run_experiment(dataclasses.replace(base, **kw), progress=False))
        np.testing.assert_allclose(
            other, ref[: len(other)], rtol=1e-10, atol=1e-14, err_msg=str(kw)
        )


@pytest.mark.slow
def test_jit_and_no_jit_agree():
    cfg = config(inits=INITS, seeds=2, steps=6)
    ref = _finals(run_experiment(cfg, progress=False))
    static, hyper = split_config(cfg)
    root = root_key(cfg.seed)
    with jax.disable_jit():
        for i in range(2):
            out = simulate_seed(jax.random.fold_in(root, i), static, hyper)
            got = [float(out[n]["final_loss"]) for n in cfg.inits]
            np.testing.assert_allclose(got, ref[i], rtol=1e-10)


def test_one_compilation_per_spec():
    """Floats (lr, spectrum, scales, seeds count within a chunk size, root seed) are traced."""
    cfg = config(seeds=4, chunk_size=4, inits=("kaiming", "hrp"))
    run_experiment(cfg, progress=False)
    before = mc.TRACE_COUNT
    for kw in ({"seed": 3}, {"seeds": 8}, {"init_std": 0.3}):
        run_experiment(dataclasses.replace(cfg, **kw), progress=False)
    run_experiment(
        dataclasses.replace(
            cfg,
            train=dataclasses.replace(cfg.train, lr=0.05),
            problem=dataclasses.replace(cfg.problem, spectrum="exp:2", scale=2.0),
        ),
        progress=False,
    )
    assert before == mc.TRACE_COUNT, "a float change recompiled"
    run_experiment(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=10)), progress=False
    )
    assert before + 1 == mc.TRACE_COUNT, "a new shape must compile exactly once"


def test_divergence_is_counted_not_averaged():
    from hrp_theory import summarize_experiment

    cfg = config(inits=("kaiming", "aligned"), lr=50.0, steps=40, seeds=4, scale=5.0)
    s = summarize_experiment(run_experiment(cfg, progress=False))
    e = s["inits"]["aligned"]
    assert e["n_diverged"] == 4
    assert e["final_loss"]["n_nonfinite"] == 4 and e["final_loss"]["n"] == 0


def test_interrupt_keeps_finished_chunks(monkeypatch):
    cfg = config(seeds=6, chunk_size=2, inits=("kaiming",))
    real_runner = mc.chunk_runner

    def patched(*args):
        fn, calls = real_runner(*args), []

        def wrapped(*b):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return fn(*b)

        return wrapped

    monkeypatch.setattr(mc, "chunk_runner", patched)
    res = run_experiment(cfg, progress=False)
    assert res.interrupted and res.n_done == 4
    assert res.per_seed["kaiming"]["final_loss"].shape == (4,)


def test_same_total_budget_snapshot():
    """HRP's same-total-budget loss is its loss after steps − T_p main steps."""
    cfg = config(inits=("hrp",), steps=20, record_every=1, seeds=2)
    res = run_experiment(cfg, progress=False)
    d = res.per_seed["hrp"]
    np.testing.assert_allclose(d["final_loss_same_total"], d["loss_curve"][:, 20 - 5], rtol=1e-12)


@pytest.mark.slow
def test_any_batch_size_gives_the_same_seeds():
    """Batches of 1 to 64 vmapped seeds (no cap since no program issues a batched LAPACK call,
    see hrp_theory.linalg): the same per-seed results."""
    cfg = config(seeds=64, inits=("kaiming", "hrp", "pissa", "lora-ga"), steps=10)
    ref = _finals(run_experiment(cfg, progress=False))
    for batch in (8, 64):
        got = _finals(run_experiment(dataclasses.replace(cfg, batch_size=batch), progress=False))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14, err_msg=str(batch))
