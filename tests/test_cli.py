"""The CLI contract: JSON schema, files written, bad input → exit 2 with one clear line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hrp_theory import cli

SMALL = [
    "--m",
    "8",
    "--n",
    "6",
    "--r",
    "2",
    "--steps",
    "20",
    "--seeds",
    "6",
    "--quiet",
    "--preheat-rank",
    "4",
    "--preheat-steps",
    "5",
]
STAT_KEYS = {"mean", "se", "median", "q05", "q95", "ci95"}


def test_compare_writes_json_contract(tmp_path, capsys):
    out = tmp_path / "run"
    path = tmp_path / "r.json"
    code = cli.main(
        [
            "compare",
            *SMALL,
            "--inits",
            "kaiming,aligned,hrp,pissa",
            "--json",
            str(path),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "hrp" in text and "excess loss" in text
    js = json.loads(path.read_text())
    assert {"config", "optimal_loss", "inits", "provenance"} <= set(js)
    assert js["config"]["problem"]["m"] == 8 and js["config"]["lora"]["r"] == 2
    for k in ("jax", "backend", "dtype", "git_commit"):
        assert k in js["provenance"]
    for name in ("kaiming", "aligned", "hrp", "pissa"):
        e = js["inits"][name]
        assert set(e["final_loss"]) >= STAT_KEYS and set(e["excess_loss"]) >= STAT_KEYS
        assert e["n_diverged"] == 0
        assert len(e["curve"]["mean"]) == len(e["curve"]["steps"]) == 21
    assert "same_total_budget" in js["inits"]["hrp"]
    assert js == json.loads((out / "summary.json").read_text())
    for f in ("curves.png", "distribution.png", "per_seed.npz"):
        assert (out / f).stat().st_size > 0
    with np.load(out / "per_seed.npz", allow_pickle=False) as z:
        assert z["hrp/final_loss"].shape == (6,)
    # the summary's numbers are the per-seed ones
    with np.load(out / "per_seed.npz", allow_pickle=False) as z:
        assert js["inits"]["kaiming"]["final_loss"]["mean"] == pytest.approx(
            float(np.mean(z["kaiming/final_loss"])), rel=1e-6
        )


BAD = [
    (["--r", "9"], "r"),
    (["--preheat-rank", "1"], "preheat_rank"),
    (["--preheat-rank", "7"], "preheat_rank"),
    (["--steps", "0"], "steps"),
    (["--steps=-3"], "steps"),
    (["--lr", "0"], "lr"),
    (["--lr=-1e-3"], "lr"),
    (["--seeds", "0"], "seeds"),
    (["--spectrum", "cauchy:1"], "spectrum"),
    (["--spectrum", "values:1,,2"], "spectrum"),
    (["--spectrum", "values:1,abc"], "spectrum"),
    (["--rank", "7"], "rank"),
    (["--inits", "kaiming,best"], "inits"),
    (["--optimizer", "lbfgs"], "optimizer"),
    (["--lora", "dora"], "lora"),
    (["--preheat-steps", "converged"], "preheat_steps"),
    (["--json", "/nonexistent-folder/x.json"], "json"),
    (["--record-every", "7"], "record_every"),
    (["--sigma", "power:1:sideways"], "sigma"),
]


@pytest.mark.parametrize("extra,field", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_exits_2_with_one_line(extra, field, capsys, tmp_path):
    args = ["compare", *SMALL, "--out", str(tmp_path / "o"), *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hrp-sim compare: error: " + field), err
    assert not (tmp_path / "o").exists(), "nothing may be written on bad input"


def test_converged_preheat_accepted_with_freeze_a(tmp_path):
    assert (
        cli.main(
            [
                "compare",
                *SMALL,
                "--preheat",
                "freeze-a",
                "--preheat-steps",
                "converged",
                "--out",
                str(tmp_path),
                "--no-figures",
            ]
        )
        == 0
    )


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.run(
        [sys.executable, "-m", "hrp_theory.cli", "compare", "--r", "100"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "r: 100 exceeds min(m, n) = 64" in p.stderr


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", "--steps", "many"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps" in err[0]


@pytest.mark.slow
def test_demo_default_orders_hrp_between_random_and_aligned(tmp_path, capsys):
    """The demo's claim on its built-in default (200 seeds, float32): the 95 % CIs of the mean
    excess loss are disjoint and ordered aligned < hrp < kaiming."""
    assert cli.main(["demo", "--quiet", "--no-figures", "--out", str(tmp_path)]) == 0
    assert "non-overlapping 95% CIs: yes" in capsys.readouterr().out
