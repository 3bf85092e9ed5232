"""Bad input, as an adversarial user types it: one line naming the field and the fix, exit 2,
nothing written. One parametrized table per command."""

import os

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
    "4",
    "--seeds",
    "2",
    "--quiet",
    "--preheat-rank",
    "4",
    "--preheat-steps",
    "2",
]

COMPARE = [
    (["--seed", "18446744073709551616"], "seed"),  # 2**64
    (["--seed", "-1"], "seed"),
    (["--seeds", "0"], "seeds"),
    (["--seeds", "2147483648"], "seeds"),
    (["--m", "0"], "m"),
    (["--n", "-3"], "n"),
    (["--r", "9"], "r"),
    (["--rank", "0"], "rank"),
    (["--scale", "nan"], "scale"),
    (["--scale", "0"], "scale"),
    (["--w0-scale", "-1"], "w0_scale"),
    (["--w0-align", "1.5"], "w0_align"),
    (["--w0-spectrum", "zipf:2"], "w0_spectrum"),
    (["--noise", "0.1"], "noise"),
    (["--samples", "0"], "n_samples"),
    (["--alpha", "inf"], "alpha"),
    (["--scaling", "alpha"], "scaling"),
    (["--init-std", "-0.1"], "init_std"),
    (["--base", "hrp"], "base"),
    (["--inits", ""], "inits"),
    (["--inits", "kaiming,,hrp"], "inits"),
    (["--inits", "hrp,hrp"], "inits"),
    (["--preheat", "freeze-b"], "preheat"),
    (["--preheat-optimizer", "lbfgs"], "preheat_optimizer"),
    (["--preheat-lr", "0"], "preheat_lr"),
    (["--momentum", "1"], "momentum"),
    (["--weight-decay", "-1"], "weight_decay"),
    (["--eps", "1e-20"], "eps"),
    (["--chunk-size", "0"], "chunk_size"),
    (["--batch-size", "-2"], "batch_size"),
    (["--devices", "0"], "devices"),
    (["--basis", "diagonal"], "basis"),
    (["--cpu-devices", "0"], "cpu_devices"),
    (["--m", "200000", "--n", "200000"], "memory"),
    (["--json", "/nonexistent-folder/x.json"], "json"),
    # issue 24's adversarial pass: each of these was accepted, crashed or blamed another flag
    (["--cpu-devices", "1000000000000"], "cpu_devices"),  # was an XLA fatal error
    (["--scale", "1e308"], "scale"),  # blamed eps
    (["--samples", "1000000000000"], "memory"),  # suggested lowering m, n
    (["--preheat-lr", "nan", "--inits", "kaiming"], "preheat_lr"),  # unused flags: validated
    (["--preheat-rank", "-4", "--inits", "kaiming"], "preheat_rank"),
    (["--preheat-optimizer", "lbfgs", "--inits", "kaiming"], "preheat_optimizer"),
    (["--json", ""], "json"),
]


@pytest.mark.parametrize("extra,field", COMPARE, ids=[" ".join(c[0]) for c in COMPARE])
def test_compare_bad_input(extra, field, capsys, tmp_path):
    out = tmp_path / "o"
    assert cli.main(["compare", *SMALL, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hrp-sim compare: error: {field}"), err
    assert not out.exists(), "nothing may be written on bad input"


def test_seeds_above_2_32_are_their_own_stream(tmp_path):
    """No 2³² aliasing: seed 2³² is not seed 0, and seeds below 2³² are jax.random.key's."""
    import jax

    from hrp_theory import root_key

    for s in (0, 7, 2**31 + 5, 2**32 - 1):
        assert np.array_equal(
            jax.random.key_data(root_key(s)), jax.random.key_data(jax.random.key(s))
        )
    a, b = (jax.random.key_data(root_key(s)) for s in (0, 2**32))
    assert not np.array_equal(a, b)
    runs = {}
    for s in (0, 2**32, 2**64 - 1):
        out = tmp_path / str(s)
        assert (
            cli.main(["compare", *SMALL, "--seed", str(s), "--out", str(out), "--no-figures"]) == 0
        )
        with np.load(out / "per_seed.npz") as z:
            runs[s] = z["kaiming/final_loss"]
    assert not np.allclose(runs[0], runs[2**32]) and not np.allclose(runs[0], runs[2**64 - 1])


SWEEP = [
    (["--vary", "preheat-rank=2,4", "--preheat-rank", "4"], "also given as a fixed flag"),
    (["--vary", "preheat_rank=2,4", "--preheat-rank=4"], "also given as a fixed flag"),
    (["--vary", "help=1,2"], "not a sweepable"),
    (["--vary", "stream=1,2"], "not a sweepable"),
    (["--vary", "json=a,b"], "not a sweepable"),
    (["--vary", "batch-size=1,2"], "not a sweepable"),
    (["--vary", "spectrum=values:1,0.5;values:1,,2"], "spectrum"),
    # issue 24: a bad value later in the list was found only when its point started, after the
    # earlier points were written
    (["--vary", "eps=1e-3,1e-20"], "eps"),
    (["--vary", "samples=10,1000000000000"], "memory"),
]


@pytest.mark.parametrize("extra,match", SWEEP, ids=[" ".join(c[0]) for c in SWEEP])
def test_sweep_bad_input(extra, match, capsys, tmp_path):
    out = tmp_path / "o"
    assert cli.main(["sweep", *SMALL, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists()


def test_abbreviated_flags_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", *SMALL, "--vary", "preheat-rank=2,4", "--preheat-r", "4"])
    assert e.value.code == 2
    assert "unrecognized arguments: --preheat-r" in capsys.readouterr().err


VERIFY = [
    (["--checks", ","], "checks: empty"),
    (["--checks", ""], "checks: empty"),
    (["--checks", "hmt,,aligned"], "checks: empty"),
    (["--seed", "-5"], "seed"),
    (["--n-se-bound", "nan"], "n_se_bound"),
]


@pytest.mark.parametrize("extra,match", VERIFY, ids=[" ".join(c[0]) for c in VERIFY])
def test_verify_bad_input(extra, match, capsys, tmp_path):
    out = tmp_path / "o"
    assert cli.main(["verify", "--quick", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not out.exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can create files in: mode 0500, and immutable (chattr +i) for root."""
    import shutil
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    immutable = os.geteuid() == 0
    if immutable and (
        not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(ro)]).returncode
    ):
        ro.chmod(0o700)
        pytest.skip("running as root without chattr: no folder is read-only for this test")
    yield ro
    if immutable:
        subprocess.run(["chattr", "-i", str(ro)])
    ro.chmod(0o700)


def test_unwritable_outputs_are_found_before_the_run(read_only_folder, tmp_path, capsys):
    """A read-only folder: refused at once (exit 2, one line, no traceback), nothing computed."""
    ro = read_only_folder
    assert cli.main(["compare", *SMALL, "--out", str(ro / "run")]) == 2
    assert "out: no permission to write" in capsys.readouterr().err
    assert (
        cli.main(["compare", *SMALL, "--out", str(tmp_path / "ok"), "--json", str(ro / "s.json")])
        == 2
    )
    assert "json: no permission to write" in capsys.readouterr().err
    assert not (tmp_path / "ok").exists()
    assert cli.main(["verify", "--quick", "--checks", "aligned", "--out", str(ro / "v")]) == 2
    assert "out: no permission to write" in capsys.readouterr().err


def test_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["compare", *SMALL, "--out", str(f)]) == 2
    assert "out: " in capsys.readouterr().err and f.read_text() == "x"
    assert cli.main(["compare", *SMALL, "--out", str(f / "below")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_lr_grid_rates_never_share_a_run_name():
    """Rates that agree to 6 digits were one run file (%g names): the second overwrote the first
    and a two-rate grid kept one run. Names now keep every digit; duplicates are refused; the
    common rate is the grid's own value (no KeyError after training)."""
    from hrp_theory.finetune.config import LoraConfig, lr_label

    cfg = LoraConfig(lr=1e-4, lr_grid=(1e-4, 1.000001e-4))
    assert len({lr_label(v) for v in cfg.lrs}) == 2
    assert lr_label(5e-4) == "0.0005" and lr_label(1.5e-4) == "0.00015"  # the old names
    with pytest.raises(ValueError, match="given more than once"):
        LoraConfig(lr=1e-4, lr_grid=(1e-4, 1e-4))
    near = LoraConfig(lr=5e-4, lr_grid=(1e-4, 5.0000000001e-4))
    assert near.lr in near.lrs


def test_an_empty_out_is_refused_not_the_current_folder(capsys, tmp_path, monkeypatch):
    """``--out ""`` wrote into the current folder (issue 24)."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", *SMALL, "--out", ""]) == 2
    assert "out" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_fetch_data_onto_a_file_is_one_line(capsys, tmp_path):
    """``fetch-data --out FILE`` gave a traceback (issue 24)."""
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["fetch-data", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out" in err[0], err


# --- the adversarial pass (tools/adversarial.py): every flag of every command -------------------

ADVERSARIAL_FAST = ("compare", "sweep", "verify", "convert", "fetch-data")
ADVERSARIAL_SLOW = ("demo", "real", "lora", "finetune")  # these load MiniLM per late check


def _adversarial(command):
    import adversarial

    why = adversarial.available(command)
    if why:
        pytest.skip(why)
    cases, _ = adversarial.run_flag_cases({command}, progress=False)
    bad = [f"{' '.join(c.argv)}: {c.why}" for c in cases if not c.ok]
    assert len(cases) >= 8 and not bad, "\n".join(bad[:20])
    return cases


@pytest.mark.parametrize("command", ADVERSARIAL_FAST)
def test_adversarial_flag_cases(command):
    """Every flag × hostile values (empty, nan, inf, 1e400, words, lists, paths that cannot be
    written or read, abbreviations, unknown flags): refused per contract, or accepted only
    where the harness documents what the value means."""
    _adversarial(command)


@pytest.mark.slow
@pytest.mark.parametrize("command", ADVERSARIAL_SLOW)
def test_adversarial_flag_cases_real_model(command):
    _adversarial(command)


def test_values_the_adversarial_pass_found(capsys):
    """Each was accepted or crashed before (tools/adversarial.py, this session's pass)."""
    from hrp_theory.finetune.config import LoraConfig
    from hrp_theory.verify._rules import Settings

    with pytest.raises(ValueError, match="targets: empty"):
        LoraConfig(targets="")  # was: adapters on every kernel, the pooler's included
    with pytest.raises(ValueError, match="lanczos_steps"):
        LoraConfig(lanczos_steps=10**20)  # was: accepted, a Krylov basis of 1e20 vectors
    for f, v in (("n_se_expect", 1e20), ("n_se_bound", 1e-300), ("pathwise_tol", 1e20)):
        with pytest.raises(ValueError, match=f):  # was: any estimate passes / every row fails
            Settings(**{f: v})
    # was: OverflowError (a traceback) from int(inf)
    assert cli.main(["lora", "--curve-steps", "1e400", "--out", "/nonexistent/never"]) == 2
    assert "curve_steps" in capsys.readouterr().err
    # was: "hrp-sim: error: …", not naming the command
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", "--bogus"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("hrp-sim compare: error: unrecognized arguments")
