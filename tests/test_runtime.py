"""The persistent compilation cache hrp-sim turns on: where it lives, how it is turned off, and
that a cached run gives the same numbers as a compiled one."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hrp_theory import runtime

TINY = ["compare", "--m", "12", "--n", "10", "--r", "2", "--seeds", "4", "--steps", "20"]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HRP_COMPILE_CACHE", str(tmp_path / "c"))
    assert runtime.cache_dir() == str(tmp_path / "c")
    for off in ("off", "0", ""):
        monkeypatch.setenv("HRP_COMPILE_CACHE", off)
        assert runtime.cache_dir() is None
    monkeypatch.delenv("HRP_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == str(tmp_path / "xdg" / "hrp-theory" / "xla")


def _run(tmp_path, name, cache):
    env = {**os.environ, "HRP_COMPILE_CACHE": str(cache), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = tmp_path / name
    cmd = [sys.executable, "-m", "hrp_theory.cli", *TINY, "--quiet", "--no-figures"]
    run = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with np.load(out / "per_seed.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
def test_hrp_sim_fills_the_cache_and_a_cached_run_gives_the_same_numbers(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, "a", cache)
    stored = sorted(os.listdir(cache))
    assert stored, "hrp-sim compiled programs but stored none"
    second = _run(tmp_path, "b", cache)
    assert sorted(os.listdir(cache)) == stored, "the second run compiled programs anew"
    assert first.keys() == second.keys()
    numeric = [k for k in first if first[k].dtype.kind in "fiub"]
    assert len(numeric) > 4
    for k in numeric:  # every number; the run id differs by design
        np.testing.assert_array_equal(first[k], second[k], err_msg=k)


def test_an_unwritable_cache_folder_leaves_the_cache_off(tmp_path):
    import jax

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    suite = jax.config.jax_compilation_cache_dir  # the suite's own cache (tests/conftest.py)
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert runtime.compile_cache(blocker / "sub") is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", suite)


def test_configure_runs_numpy_blas_on_one_thread(monkeypatch):
    """Host BLAS on one thread (its spinning workers slowed SVDs 77× next to a busy XLA
    program); ``HRP_HOST_BLAS_THREADS`` overrides, and the test leaves the suite at 1."""
    from threadpoolctl import threadpool_info

    blas = lambda: {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    runtime.configure()
    if not blas():
        pytest.skip("threadpoolctl finds no BLAS library in this NumPy")
    assert blas() == {1}
    monkeypatch.setenv("HRP_HOST_BLAS_THREADS", "2")
    try:
        assert runtime.host_blas_threads() == 2 and blas() == {2}
    finally:
        runtime.host_blas_threads(1)
    assert blas() == {1}
