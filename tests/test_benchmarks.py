"""The benchmark scripts run at a tiny size and write the JSON figures they promise."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_throughput_benchmark_tiny(tmp_path, monkeypatch):
    out = tmp_path / "tp.json"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "throughput.py",
            "--m",
            "16",
            "--n",
            "12",
            "--r",
            "2",
            "--seeds",
            "4",
            "--steps",
            "5",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
    )
    mod = runpy.run_path(str(ROOT / "benchmarks" / "throughput.py"))
    assert mod["main"]() == 0
    js = json.loads(out.read_text())
    for k in ("jax_seed_steps_per_s", "numpy_seed_steps_per_s", "ratio_vs_numpy", "config"):
        assert k in js
    assert js["ratio_vs_numpy"] > 0
    assert js["max_abs_difference"] < 1e-4  # both loops compute the same run


def test_preheat_svd_benchmark_tiny(tmp_path, monkeypatch):
    out, fig = tmp_path / "ps.json", tmp_path / "ps.png"
    mod = runpy.run_path(str(ROOT / "benchmarks" / "preheat_svd.py"))
    assert (
        mod["main"](
            [
                "--widths",
                "32,64",
                "--p",
                "8",
                "--r",
                "2",
                "--preheat-steps",
                "2",
                "--repeats",
                "1",
                "--json",
                str(out),
                "--figure",
                str(fig),
            ]
        )
        == 0
    )
    js = json.loads(out.read_text())
    assert [r["width"] for r in js["rows"]] == [32, 64]
    for r in js["rows"]:
        assert r["thin_s"] > 0 and r["speedup"] > 0
        assert r["top_r_rel_err"] < 1e-3  # thin and dense give the same top-r spectrum
    assert fig.stat().st_size > 0


@pytest.mark.slow
def test_batching_benchmark_tiny(tmp_path):
    out = tmp_path / "batching.json"
    main = runpy.run_path(str(ROOT / "benchmarks" / "batching.py"))["main"]
    main(["--problems", "spectral:8x6,dense:8x6", "--seeds", "4", "--json", str(out)])
    got = json.loads(out.read_text())
    spectral, dense = got["problems"]
    for row in got["problems"]:
        assert len(row["us_a_seed"]) == 5 and all(v > 0 for v in row["us_a_seed"].values())
        assert row["best"] in row["us_a_seed"]
    # the default plan: a narrow diagonal program in batches without YNNPACK; a narrow dense one
    # one seed at a time without it (up to DENSE_XLA_FUSION_DIM wide: test_seed_minor.py)
    assert spectral["default"] == "batch 64, XLA fusion"
    assert dense["default"] == "1 seed, XLA fusion"


@pytest.mark.slow
def test_memory_benchmark_tiny(tmp_path):
    out = tmp_path / "mem.json"
    mod = runpy.run_path(str(ROOT / "benchmarks" / "memory.py"))
    assert (
        mod["main"](
            [
                "--seeds",
                "20,40",
                "--per-seed-max",
                "20",
                "--steps",
                "4",
                "--chunk",
                "16",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    js = json.loads(out.read_text())
    assert [(r["seeds"], r["stream"]) for r in js["rows"]] == [(20, True), (20, False), (40, True)]
    assert all(r["spectral"] and r["peak_rss_mb"] > 0 for r in js["rows"])
    assert "streamed" in js["rss_slopes"] and out.with_suffix(".png").stat().st_size > 0


def test_reduced_benchmark_counts_the_flops_xla_counts():
    """``step_flops`` (the roofline's count from the shapes) against XLA's own cost analysis of
    one GD step in the reduced basis: within 20 % (XLA counts a broadcast-and-sum product's
    reduction as it lowers it; the count here is 2 flops a multiply-add)."""
    import jax
    import jax.numpy as jnp

    from hrp_theory import factors, losses, problems

    step_flops = runpy.run_path(str(ROOT / "benchmarks" / "reduced.py"))["step_flops"]
    for rows, cols, k, r in [(8, 24, 8, 4), (8, 24, 8, 16), (12, 20, 12, 2)]:
        obj = problems.diagonal_problem(jnp.linspace(1.0, 2.0, k), rows, cols).objective

        def step(B, A):
            g = losses.factor_grads(factors.LoraParams(B, A), obj, 0.5)
            return B - 0.1 * g.B, A - 0.1 * g.A

        cost = jax.jit(step).lower(jnp.ones((rows, r)), jnp.ones((cols, r))).compile()
        analysis = cost.cost_analysis()
        xla = (analysis[0] if isinstance(analysis, list) else analysis)["flops"]
        assert abs(step_flops(r, rows, cols, k) - xla) <= 0.2 * xla, (rows, cols, k, r, xla)


@pytest.mark.slow
def test_device_check_dry_run_on_cpu(tmp_path):
    """The GPU check's steps and its JSON, at tiny sizes and without installing anything; its
    ``reduced`` step is ``benchmarks/reduced.py``'s smoke."""
    out = tmp_path / "dc.json"
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry-run", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    js = json.loads(out.read_text())
    assert js["dry_run"] and js["all_ok"] and js["backend"] == "cpu"
    assert set(js["steps"]) == {"backend", "tests", "demo", "throughput", "reduced"}
    assert js["seed_steps_per_s"] > 0 and 0 < js["fraction_of_peak"] < 1
    assert 0 < js["reduced_fraction_of_peak"] <= 1 and js["reduced_seed_minor_speedup"] > 0
    # benchmarks/reduced.py's own JSON (the dry run's tiny sizes)
    red = json.loads((tmp_path / "dc.json.d" / "reduced.json").read_text())
    assert red["reduced_speedup"] > 0 and red["million_seeds_s"] > 0 and red["peak_rss_mb"] > 0
    assert red["width"]["n"] == [48, 64] and np.isfinite(red["width_slope"])
    assert red["layout"]["batch"] == [8, 64] and red["seed_minor_speedup"] > 0
    assert red["roofline"]["seed_flops"] > 0 and 0 < red["roofline"]["fraction_of_peak"] <= 1
    assert js["demo_run_s"] > 0 and js["compile_s"]


def test_device_check_without_a_gpu_says_use_dry_run(tmp_path):
    env = dict(os.environ, PATH="/usr/bin:/bin")  # no nvidia-smi on this PATH
    if any(Path(d, "nvidia-smi").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("this machine has nvidia-smi")
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--out", str(tmp_path / "x.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "--dry-run" in run.stderr
