"""Several processes (``jax.distributed`` on localhost, 2 CPU processes) give the
same per-seed results as one process; only process 0 writes; bad flags fail at the boundary.
(One CPU device per process: the point is the process split; ``test_sharding`` covers devices.)"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import xla_flags

from hrp_theory import cli

ARGS = [
    "compare",
    "--m",
    "16",
    "--n",
    "12",
    "--r",
    "2",
    "--seeds",
    "10",
    "--steps",
    "20",
    "--inits",
    "kaiming,aligned,hrp",
    "--preheat-rank",
    "6",
    "--x64",
    "--quiet",
    "--no-figures",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    port = free_port()
    flags = xla_flags("--xla_force_host_platform_device_count=1")
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hrp_theory.cli",
                *ARGS,
                "--out",
                str(tmp_path / f"p{i}"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "hrp" in outs[0] and not (tmp_path / "p1").exists()  # process 0 alone reports

    assert cli.main([*ARGS, "--out", str(tmp_path / "single")]) == 0
    with (
        np.load(tmp_path / "p0" / "per_seed.npz", allow_pickle=False) as two,
        np.load(tmp_path / "single" / "per_seed.npz", allow_pickle=False) as one,
    ):
        assert sorted(two.files) == sorted(one.files)
        assert two["kaiming/final_loss"].shape == (10,)
        for k in set(one.files) - {"run_id"}:
            np.testing.assert_array_equal(two[k], one[k], err_msg=k)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2"], "go together"),
        (
            ["--coordinator", "nohostport", "--num-processes", "2", "--process-id", "0"],
            "must be HOST:PORT",
        ),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
            r"process_id: 2 must be an integer in \[0, 1\]",
        ),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "0", "--process-id", "0"],
            "num_processes: 0 must be a positive integer",
        ),
    ],
)
def test_bad_distributed_flags_exit_2_with_the_fix(flags, message, capsys, tmp_path):
    assert cli.main([*ARGS, "--out", str(tmp_path / "x"), *flags]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "x").exists()
