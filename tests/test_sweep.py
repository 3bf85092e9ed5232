"""`hrp-sim sweep`: table, figure, one compile across a float sweep, resume, bad lists."""

import csv
import json

import pytest

from hrp_theory import cli, experiment
from hrp_theory import seeds as mc

BASE = [
    "sweep",
    "--m",
    "9",
    "--n",
    "7",
    "--steps",
    "10",
    "--seeds",
    "3",
    "--inits",
    "kaiming,aligned",
    "--quiet",
]


def test_sweep_writes_table_and_compiles_once_for_a_float(tmp_path):
    before = mc.TRACE_COUNT
    rc = cli.main([*BASE, "--vary", "lr=0.02,0.05,0.1", "--out", str(tmp_path)])
    assert rc == 0
    assert before + 1 == mc.TRACE_COUNT, "a learning-rate sweep must compile once"
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert len(rows) == 6 and {r["lr"] for r in rows} == {"0.02", "0.05", "0.1"}
    assert (tmp_path / "sweep.png").stat().st_size > 0
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["vary"] == {"lr": [0.02, 0.05, 0.1]}
    # more steps of GD at a larger lr: the random init's excess loss goes down
    k = {float(r["lr"]): float(r["excess_loss"]) for r in rows if r["init"] == "kaiming"}
    assert k[0.1] < k[0.02]


def test_zipped_lists(tmp_path):
    rc = cli.main(
        [
            *BASE,
            "--inits",
            "kaiming,hrp",
            "--vary",
            "r=1,2",
            "--vary",
            "preheat-rank=2,4",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [(r["r"], r["preheat-rank"]) for r in rows if r["init"] == "hrp"] == [
        ("1", "2"),
        ("2", "4"),
    ]


def test_interrupted_sweep_resumes(tmp_path, monkeypatch, capsys):
    real = experiment.run_experiment
    calls = []

    def flaky(cfg, progress=True, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, progress=progress, **kw)

    monkeypatch.setattr(experiment, "run_experiment", flaky)
    argv = [*BASE, "--vary", "scale=1,2,3", "--out", str(tmp_path)]
    assert cli.main(argv) == 130
    assert len(list((tmp_path / "points").glob("*.json"))) == 1
    assert len(list(csv.DictReader((tmp_path / "sweep.csv").open()))) == 2  # point 1 kept
    monkeypatch.setattr(experiment, "run_experiment", real)
    capsys.readouterr()
    argv.remove("--quiet")
    assert cli.main(argv) == 0
    assert "kept from" in capsys.readouterr().out
    assert len(list(csv.DictReader((tmp_path / "sweep.csv").open()))) == 6


@pytest.mark.parametrize(
    "vary,match",
    [
        ([], "nothing to sweep"),
        (["--vary", "lr"], "no values"),
        (["--vary", "lr=0.1,"], "empty value"),
        (["--vary", "lr=0.1,0.1"], "twice"),
        (["--vary", "lr=0.1,x"], "bad value"),
        (["--vary", "bogus=1,2"], "not a sweepable"),
        (["--vary", "out=a,b"], "not a sweepable"),
        (["--vary", "r=1,2", "--vary", "preheat-rank=2,4,6"], "different lengths"),
        (["--vary", "steps=10,20", "--steps", "5"], "also given as a fixed flag"),
        (["--vary", "preheat-rank=4,99", "--inits", "hrp"], "point {'preheat-rank': 99}"),
    ],
)
def test_inconsistent_sweeps_exit_2(tmp_path, vary, match, capsys):
    assert cli.main([*BASE, *vary, "--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o" / "points").exists()
