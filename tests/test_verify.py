"""`hrp-sim verify`: the whole catalogue at quick size, its JSON contract, and failing verdicts."""

import json

import numpy as np
import pytest

from hrp_theory import cli, run_experiment, spectrum_values, theory, verify


@pytest.mark.slow
def test_verify_quick_passes_every_check(tmp_path, capsys):
    """All THEORY §8 checks at CI size (≈ 70 s on 2 cores): verdicts, JSON, report, figures."""
    out = tmp_path / "v"
    rc = cli.main(
        ["verify", "--quick", "--out", str(out), "--json", str(tmp_path / "v.json"), "--quiet"]
    )
    doc = json.loads((tmp_path / "v.json").read_text())
    failed = [c for c in doc["checks"] if not c["passed"]]
    assert rc == 0 and doc["passed"] and not failed, failed
    keys = {"name", "setting", "prediction", "measured", "se", "seeds", "tolerance", "passed"}
    assert all(keys <= set(c) for c in doc["checks"])
    numbers = {c["name"].split()[0].rstrip("abcde") for c in doc["checks"]}
    assert {str(i) for i in range(1, 13)} <= numbers, "every THEORY §8 check has a row"
    assert all(c["seeds"] >= 1 for c in doc["checks"])
    for name in (
        "report.md",
        "verify.json",
        "theorem_c.png",
        "transient.png",
        "gap.png",
        "regimes.png",
        "anisotropic.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "ALL PASS" in (out / "report.md").read_text()
    assert "verdict: PASS" in capsys.readouterr().out


def test_a_wrong_prediction_fails():
    """(1 − r/n)F replaced by (1 − r/(n+5))F, at check 1's full seed count (2000, Gaussian A,
    power spectrum): the shift is 0.0074 ≈ 7 SE, so the verdict must flip to fail while the
    right formula passes on the same sample. (At quick size, 300 seeds, 4 SE ≈ 0.01 and the
    shift would go unnoticed: the tolerance follows the SE, by design.)"""
    st = verify.Settings(progress=False)
    cfg = verify.experiment("power:1", "freeze-a", ("gaussian",), 2000, st)
    R = 2 * run_experiment(cfg, progress=False).per_seed["gaussian"]["final_loss"]
    sigma = spectrum_values("power:1", 48)
    F = theory.energies(sigma, 4)[0]
    right = verify.expectation("1", "", R, theory.freeze_a_mean(sigma, 64, 4), st)
    wrong = verify.expectation("1", "", R, (1 - 4 / (64 + 5)) * F, st)
    assert right.passed and not wrong.passed, (right, wrong)


def test_a_wrong_closed_form_propagates_to_the_verdict(monkeypatch):
    """The catalogue takes its predictions from theory.py: a 1 % error in the aligned curve's rate
    fails check 2's pathwise rows through ``run_checks``."""
    real = theory.aligned_curve
    monkeypatch.setattr(theory, "aligned_curve", lambda s, r, s2, t: real(s, r, 1.01 * s2, t))
    res = verify.run_checks(["aligned"], verify.Settings(quick=True, progress=False))
    assert not res["passed"]
    assert [c["passed"] for c in res["checks"]] == [True, True, False]


def test_rules_fail_when_they_should():
    st = verify.Settings(progress=False)
    x = np.random.default_rng(0).normal(1.0, 0.1, 1000)  # mean 1, SE ≈ 0.003
    assert verify.expectation("e", "", x, 1.0, st).passed
    assert not verify.expectation("e", "", x, 1.05, st).passed
    assert verify.bound("b", "", x, 1.05, st, upper=True).passed
    assert not verify.bound("b", "", x, 0.95, st, upper=True).passed
    assert not verify.bound("b", "", x, 1.05, st, upper=False).passed
    assert (
        verify.exceeds("x", "", x, 0.9, st).passed
        and not verify.exceeds("x", "", x, 1.0, st).passed
    )
    assert not verify.pathwise("p", "", [1e-9, 2e-8], 1e-8, 2).passed
    assert not verify.expectation("e", "", np.r_[x, np.nan], 1.0, st).passed  # NaN never averaged


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--checks", "theorem-c,nope"], "unknown check 'nope'"),
        (["--checks", "hmt,hmt"], "named twice"),
        (["--pathwise-tol", "0"], "pathwise_tol"),
        (["--pathwise-tol", "1e-17"], "below what float64"),
        (["--n-se-expect", "-1"], "n_se_expect"),
    ],
)
def test_verify_bad_input_exits_2(argv, match, capsys):
    assert cli.main(["verify", *argv]) == 2
    assert match in capsys.readouterr().err


def test_verify_unknown_basis_exits_2_with_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", "--basis", "reduced"])
    assert e.value.code == 2
    assert "invalid choice: 'reduced' (choose from 'auto', 'dense')" in capsys.readouterr().err


def test_verify_list(capsys):
    assert cli.main(["verify", "--list"]) == 0
    assert "theorem-c" in capsys.readouterr().out


def test_settings_refuse_an_unknown_basis():
    with pytest.raises(ValueError, match="basis"):
        verify.Settings(basis="spectral")


@pytest.mark.slow
def test_fast_and_dense_bases_give_the_same_rows_and_verdicts():
    """The default runs each check's whitened problems in the spectral/reduced basis; the dense
    basis (randomly rotated problems, the general path) gives the same rows, the same verdicts,
    and pathwise identities at the same precision. Checks 3 and 8 (quick: 50 and 12 seeds)."""
    runs = {}
    for basis in ("auto", "dense"):
        st = verify.Settings(quick=True, progress=False, basis=basis)
        runs[basis] = verify.run_checks(["hrp-identities", "classic-flow"], st)
    fast, dense = (runs[b]["checks"] for b in ("auto", "dense"))
    assert [(r["name"], r["setting"]) for r in fast] == [(r["name"], r["setting"]) for r in dense]
    assert all(r["passed"] for r in fast + dense)
    assert runs["auto"]["settings"]["basis"] == "auto"
