"""The benchmark scripts run at a tiny size and write the JSON figures they promise."""

import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


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
