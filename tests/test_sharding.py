"""Sharding the seed axis over devices: the 8-fake-device tests run in their own pytest process
(the device count is fixed when JAX starts); bad device counts fail at the API boundary."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrp_theory import cli

from helpers import config

HERE = Path(__file__).parent


def test_eight_fake_cpu_devices_in_their_own_process():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(HERE / "multidevice"), str(HERE / "multidevice")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout


def test_more_devices_than_exist_is_refused_with_the_fix(capsys):
    with pytest.raises(ValueError, match="devices: 9 requested.*xla_force_host_platform"):
        config(devices=9)
    with pytest.raises(ValueError, match="devices: 0 must be a positive integer"):
        config(devices=0)
    assert cli.main(["compare", "--devices", "64", "--quiet", "--seeds", "2"]) == 2
    assert "devices: 64 requested" in capsys.readouterr().err
