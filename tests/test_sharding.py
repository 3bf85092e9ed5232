"""Sharding the seed axis over devices: the 8-fake-device tests run in their own pytest process
(the device count is fixed when JAX starts); bad device counts fail at the API boundary."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import config, xla_flags

from hrp_theory import cli

HERE = Path(__file__).parent


@pytest.mark.slow
def test_eight_fake_cpu_devices_in_their_own_process():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(HERE / "multidevice"),
            str(HERE / "multidevice"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout


def test_more_devices_than_exist_is_refused_with_the_fix(capsys):
    from hrp_theory.devices import local_devices

    with pytest.raises(ValueError, match="devices: 9 requested.*--cpu-devices 9"):
        local_devices(9)
    with pytest.raises(ValueError, match="devices: 0 must be a positive integer"):
        config(devices=0)
    assert cli.main(["compare", "--devices", "64", "--quiet", "--seeds", "2"]) == 2
    assert "devices: 64 requested" in capsys.readouterr().err


@pytest.mark.slow
def test_cpu_devices_flag_splits_the_host_and_keeps_results(tmp_path):
    """``--cpu-devices 2`` (a fresh process) runs on 2 CPU devices; per-seed results equal the
    1-device run bit for bit."""
    import json

    import numpy as np

    args = [
        "compare",
        "--m",
        "12",
        "--n",
        "10",
        "--r",
        "2",
        "--seeds",
        "6",
        "--steps",
        "10",
        "--inits",
        "kaiming,hrp",
        "--preheat-rank",
        "4",
        "--x64",
        "--quiet",
        "--no-figures",
    ]
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags()  # the devices: the child's own configure()
    for n in (1, 2):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "hrp_theory.cli",
                *args,
                "--cpu-devices",
                str(n),
                "--out",
                str(tmp_path / f"d{n}"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        summary = json.loads((tmp_path / f"d{n}" / "summary.json").read_text())
        assert len(summary["provenance"]["devices"]) == n
    with (
        np.load(tmp_path / "d1" / "per_seed.npz") as one,
        np.load(tmp_path / "d2" / "per_seed.npz") as two,
    ):
        for k in set(one.files) - {"run_id"}:
            np.testing.assert_array_equal(one[k], two[k], err_msg=k)


def test_cpu_devices_refused_when_bad_or_too_late(capsys):
    assert cli.main(["compare", "--cpu-devices", "0", "--quiet", "--seeds", "2"]) == 2
    assert "cpu_devices: 0 must be a positive integer" in capsys.readouterr().err
    # this pytest process has already started JAX: another split cannot apply any more
    import jax

    other = jax.local_device_count() + 1
    assert cli.main(["compare", "--cpu-devices", str(other), "--quiet", "--seeds", "2"]) == 2
    assert "JAX has already started with" in capsys.readouterr().err
