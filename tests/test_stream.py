"""Streaming statistics: chunk-merged moments equal the statistics of the whole sample, and a
streamed run's summary equals the per-seed one (bar medians and quantiles)."""

import numpy as np
import pytest
from helpers import config

from hrp_theory import cli, run_experiment, summarize_experiment
from hrp_theory.stats import merge_moments, moments_of, summarize, summarize_moments


def test_merged_moments_equal_whole_sample_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(103, 4))
    x[[5, 50, 77], [0, 2, 3]] = [np.nan, np.inf, -np.inf]
    total = None
    for chunk in np.array_split(x, [1, 2, 40, 41, 90]):
        mo = moments_of(chunk)
        total = mo if total is None else merge_moments(total, mo)
    for j in range(4):
        a, b = (
            summarize_moments(
                total._replace(
                    n=total.n[j],
                    mean=total.mean[j],
                    m2=total.m2[j],
                    n_nonfinite=total.n_nonfinite[j],
                )
            ),
            summarize(x[:, j]),
        )
        assert a["n"] == b["n"] and a["n_nonfinite"] == b["n_nonfinite"]
        np.testing.assert_allclose(
            [a["mean"], a["se"], *a["ci95"]], [b["mean"], b["se"], *b["ci95"]], rtol=1e-12
        )


def _strip(summary):
    """Drop what only per-seed samples give (medians, quantiles, n_dropped)."""
    if isinstance(summary, dict):
        return {
            k: _strip(v)
            for k, v in summary.items()
            if k
            not in (
                "median",
                "q05",
                "q95",
                "n_dropped",
                "median_steps",
                "streamed",
                "provenance",
                "config",
            )
        }
    return summary


def test_streamed_summary_equals_per_seed_summary():
    cfg = config(seeds=13, chunk_size=4, inits=("kaiming", "aligned", "hrp"), record_every=4)
    full = summarize_experiment(run_experiment(cfg, progress=False))
    res = run_experiment(cfg, progress=False, stream=True)
    assert res.per_seed is None and res.n_done == 13
    streamed = summarize_experiment(res)
    assert streamed["streamed"] and not full["streamed"]
    a, b = _strip(streamed), _strip(full)

    def close(x, y, path=""):
        if isinstance(x, dict):
            assert x.keys() == y.keys(), path
            for k in x:
                close(x[k], y[k], f"{path}/{k}")
        elif isinstance(x, list):
            np.testing.assert_allclose(
                np.asarray(x, float), np.asarray(y, float), rtol=1e-9, atol=1e-14, err_msg=path
            )
        elif isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-9, abs=1e-14), path
        else:
            assert x == y, path

    close(a, b)


def test_stream_cli_writes_summary_and_curves_only(tmp_path):
    out = tmp_path / "s"
    assert (
        cli.main(
            [
                "compare",
                "--m",
                "8",
                "--n",
                "6",
                "--r",
                "2",
                "--steps",
                "20",
                "--seeds",
                "9",
                "--chunk-size",
                "4",
                "--stream",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "summary.json").exists() and (out / "curves.png").exists()
    assert not (out / "per_seed.npz").exists() and not (out / "distribution.png").exists()
