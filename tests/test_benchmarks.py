"""The benchmark scripts run at a tiny size and write the JSON figures they promise."""

import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_throughput_benchmark_tiny(tmp_path, monkeypatch):
    out = tmp_path / "tp.json"
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--m", "16", "--n", "12", "--r", "2",
                                      "--seeds", "4", "--steps", "5", "--repeats", "1",
                                      "--json", str(out)])
    mod = runpy.run_path(str(ROOT / "benchmarks" / "throughput.py"))
    assert mod["main"]() == 0
    js = json.loads(out.read_text())
    for k in ("jax_seed_steps_per_s", "numpy_seed_steps_per_s", "ratio_vs_numpy", "config"):
        assert k in js
    assert js["ratio_vs_numpy"] > 0
    assert js["max_abs_difference"] < 1e-4  # both loops compute the same run
