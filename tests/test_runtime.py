"""The persistent compilation cache hrp-sim turns on: where it lives, how it is turned off, and
that a cached run gives the same numbers as a compiled one; the lowered programs kept beside it
(``exported``): read back, not traced, with the same numbers, and keyed exactly."""

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
    programs = sorted(os.listdir(cache / "hrp-exported"))  # the lowered programs (exported)
    assert programs, "hrp-sim kept no lowered program"
    second = _run(tmp_path, "b", cache)
    assert sorted(os.listdir(cache)) == stored, "the second run compiled programs anew"
    assert sorted(os.listdir(cache / "hrp-exported")) == programs, "it lowered them anew"
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


def _small_experiment(steps: int = 7):
    from hrp_theory import ExperimentConfig, LoraSpec, ProblemSpec, TrainSpec
    from hrp_theory.experiment import preflight

    cfg = ExperimentConfig(
        problem=ProblemSpec(m=9, n=7, spectrum="power:1"),
        lora=LoraSpec(r=2),
        train=TrainSpec(optimizer="gd", lr=0.3, steps=steps),
        inits=("kaiming", "hrp"),
        seeds=3,
    )
    return preflight(cfg)


def test_a_lowered_program_is_read_back_with_the_same_numbers(tmp_path, monkeypatch):
    """``exported.program``: a fresh runner reads the program another wrote (without tracing it)
    and gives the numbers of the plain jit bitwise; a damaged file is exported again."""
    import jax

    from hrp_theory import exported, seeds
    from hrp_theory.experiment import simulate_seed

    static, hyper = _small_experiment()
    assert exported.folder() is not None  # the tests' compilation cache is on (conftest)
    monkeypatch.setenv("HRP_EXPORT_CACHE", "off")
    assert exported.folder() is None
    exports = []  # calls of jax.export.export (a program read back makes none)
    real_export = jax.export.export
    monkeypatch.setattr(jax.export, "export", lambda f: exports.append(f) or real_export(f))
    make = seeds.chunk_runner.__wrapped__  # a fresh runner each time (no lru_cache)
    call = lambda run: jax.device_get(run(seeds.root_key(5), jax.numpy.asarray(0), hyper))

    plain = call(make(simulate_seed, static, 3, 1))  # a plain jit
    monkeypatch.delenv("HRP_EXPORT_CACHE")
    cache = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))  # exports go to tmp_path
    try:
        _read_back(tmp_path / "hrp-exported", make, call, exports, static, plain)
    finally:
        jax.config.update("jax_compilation_cache_dir", cache)


def _read_back(folder, make, call, exports, static, plain):
    import jax

    from hrp_theory import seeds
    from hrp_theory.experiment import simulate_seed

    first = call(make(simulate_seed, static, 3, 1))
    (path,) = folder.iterdir()
    assert len(exports) == 1
    traced = seeds.TRACE_COUNT
    second = call(make(simulate_seed, static, 3, 1))
    assert len(exports) == 1 and traced + 1 == seeds.TRACE_COUNT  # read back counts as a build
    path.write_bytes(b"not a program")
    third = call(make(simulate_seed, static, 3, 1))
    assert len(exports) == 2 and path.read_bytes() != b"not a program"  # exported again
    for got in (first, second, third):
        jax.tree.map(np.testing.assert_array_equal, got, plain)


def test_a_program_is_keyed_exactly_or_not_kept(monkeypatch):
    """``exported.identity``: any static setting changes the key; a local function, a setting
    without an exact encoding (an arbitrary object) or a package function replaced at run time
    (a notebook's monkeypatch, which the source hash cannot see) gets none: a plain jit."""
    from hrp_theory import exported, inits
    from hrp_theory.experiment import simulate_seed

    a, b = _small_experiment(7)[0], _small_experiment(8)[0]
    ident = exported.identity(simulate_seed, a, 3, 1)
    assert ident is not None and ident == exported.identity(simulate_seed, a, 3, 1)
    assert ident != exported.identity(simulate_seed, b, 3, 1)
    assert ident != exported.identity(simulate_seed, a, 3, 2)
    assert exported.identity(lambda k, s, x: x, a, 3, 1) is None
    assert exported.identity(simulate_seed, (a, object()), 3, 1) is None
    assert exported.encode(np.arange(3.0)) != exported.encode(np.arange(3.0) + 1e-12)
    assert exported.encode(0.1) != exported.encode(np.nextafter(0.1, 1.0))  # one ulp
    monkeypatch.setitem(inits.INIT_FNS, "kaiming", lambda *a: inits.INIT_FNS["gaussian"](*a))
    assert exported.patched() and exported.identity(simulate_seed, a, 3, 1) is None
    monkeypatch.undo()
    assert not exported.patched() and exported.identity(simulate_seed, a, 3, 1) == ident
