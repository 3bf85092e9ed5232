"""Run by ``tests/test_sharding.py`` in its own pytest process with 8 fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before JAX starts)."""

import dataclasses

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from helpers import config  # noqa: E402

from hrp_theory import run_experiment  # noqa: E402
from hrp_theory.devices import chunk_length  # noqa: E402


def test_eight_fake_devices_exist():
    assert jax.local_device_count() == 8


def test_eight_devices_give_the_one_device_results_seed_by_seed():
    cfg = config(seeds=20, inits=("kaiming", "aligned", "hrp", "pissa"))
    r8 = run_experiment(dataclasses.replace(cfg, devices=8), progress=False)
    r1 = run_experiment(dataclasses.replace(cfg, devices=1), progress=False)
    assert r8.n_done == r1.n_done == 20
    for name, rec in r1.per_seed.items():
        for metric, a in rec.items():
            b = r8.per_seed[name][metric]
            assert a.shape == b.shape, (name, metric)
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {metric}")
    np.testing.assert_array_equal(r1.optimal_loss, r8.optimal_loss)


def test_default_uses_every_device_and_rounds_chunks_up():
    cfg = config(seeds=20)
    assert chunk_length(20, None, 8) == 24 and chunk_length(20, 5, 8) == 8
    res = run_experiment(cfg, progress=False)  # devices=None: all 8
    assert res.n_done == 20 and res.per_seed["hrp"]["final_loss"].shape == (20,)
