"""hrp_theory.linalg: jnp.linalg's results, and no batched LAPACK call in any compiled program
(the jaxlib 0.10.2 CPU deadlock, see hrp_theory/runtime.py and tools/jaxlib_lapack_deadlock)."""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import config, xla_flags

from hrp_theory import linalg, seeds
from hrp_theory.simulate import simulate_seed, split_config

SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def batched_lapack_calls(hlo: str) -> list[str]:
    """The LAPACK custom calls of a compiled program whose results carry a batch of more than
    one matrix (in compiled HLO the result shapes stand before ``custom-call(``)."""
    bad = []
    for line in hlo.splitlines():
        if 'custom_call_target="lapack_' not in line:
            continue
        results = line.split("=", 1)[1].split("custom-call(", 1)[0]
        for dims in SHAPE.findall(results):
            d = [int(x) for x in dims.split(",") if x]
            if len(d) > 2 and int(np.prod(d[:-2])) > 1:
                bad.append(line.strip()[:200])
    return bad


def test_results_equal_jnp_linalg_batched_and_nested():
    x = jax.random.normal(jax.random.key(0), (3, 2, 7, 5))
    sym = x @ jnp.swapaxes(x, -1, -2) + 7 * jnp.eye(7)
    nested = lambda f: jax.vmap(jax.vmap(f))
    for ours, ref, arg in [
        (lambda a: linalg.qr(a)[1], lambda a: jnp.linalg.qr(a)[1], x),
        (linalg.singular_values, lambda a: jnp.linalg.svd(a, compute_uv=False), x),
        (linalg.eigvalsh, jnp.linalg.eigvalsh, sym),
        (lambda a: linalg.solve(a, a[:, :2]), lambda a: jnp.linalg.solve(a, a[:, :2]), sym),
    ]:
        np.testing.assert_allclose(nested(ours)(arg), nested(ref)(arg), rtol=1e-10, atol=1e-12)
    U, S, Vt = jax.vmap(linalg.svd)(x[0])
    np.testing.assert_allclose((U * S[:, None, :]) @ Vt, x[0], atol=1e-12)
    R = jnp.triu(sym[0, 0])
    np.testing.assert_allclose(R @ linalg.solve_upper(R, sym[0, 1]), sym[0, 1], atol=1e-10)


@pytest.mark.parametrize("batch", [8, 32])
def test_no_batched_lapack_call_in_the_experiment(batch):
    """Every init, Σ ≠ I (eigh, solves), the converged freeze-A preheat and the two-sided HRP:
    with 32 seeds vmapped together, each LAPACK call still sees one matrix."""
    inits = (
        "kaiming",
        "aligned",
        "aligned-sigma",
        "hrp",
        "hrp-sigma",
        "hrp-2s",
        "pissa",
        "olora",
        "lora-ga",
        "lora-one",
    )
    cfg = config(seeds=batch, inits=inits, sigma="power:1:random", batch_size=batch)
    static, hyper = split_config(cfg)
    run = seeds.chunk_runner(simulate_seed, static, batch, batch, 1)
    hlo = run.lower(seeds.root_key(0), jnp.asarray(0, jnp.int32), hyper).compile().as_text()
    assert "lapack_" in hlo  # the program does call LAPACK (the check below means something)
    assert batched_lapack_calls(hlo) == []


def test_the_checker_sees_a_batched_call():
    hlo = jax.jit(jax.vmap(jnp.linalg.qr)).lower(jnp.ones((4, 6, 6))).compile().as_text()
    assert batched_lapack_calls(hlo)


def _run(code: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = xla_flags()  # the devices: the child's own configure()
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_svd_of_a_matrix_with_inf_returns_nan_instead_of_spinning():
    """LAPACK's gesdd never returns on an inf (the hang of a diverged float32 preheat): the
    guarded SVD gives NaN factors at once. Run in a subprocess, since a failure is a hang."""
    code = (
        "import numpy as np, jax.numpy as jnp\n"
        "from hrp_theory import linalg\n"
        "x = np.random.default_rng(0).standard_normal((6, 6)).astype(np.float32)\n"
        "x[0, 0] = np.inf\n"
        "U, S, Vt = linalg.svd(jnp.asarray(x))\n"
        "assert np.isnan(np.asarray(S)).all() and np.isnan(np.asarray(U)).all()\n"
        "y = x.copy(); y[0, 0] = 1.0\n"
        "ok = [np.asarray(t) for t in linalg.svd(jnp.asarray(y))]\n"
        "want = [np.asarray(t) for t in jnp.linalg.svd(jnp.asarray(y), full_matrices=False)]\n"
        "assert all(np.array_equal(a, b) for a, b in zip(ok, want))\n"
        "print('ok')\n"
    )
    assert _run(code, 120).stdout.strip() == "ok"


def test_the_diverging_preheat_of_the_adversarial_pass_finishes(tmp_path):
    """The command that ran for minutes (HRP's float32 preheat diverges at lr 1.6 on seed 10)
    now finishes, every seed reported as diverged, with its table and figures."""
    from hrp_theory import cli

    out = tmp_path / "run"
    args = ["compare", "--m", "16", "--n", "16", "--r", "2", "--seeds", "11", "--steps", "100"]
    args += ["--optimizer", "gd", "--lr", "1.6", "--inits", "hrp", "--quiet", "--out", str(out)]
    code = f"from hrp_theory import cli; raise SystemExit(cli.main({args!r}))"
    done = _run(code, 300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "all 11 diverged" in done.stdout
    assert (out / "curves.png").stat().st_size > 0 and (out / "distribution.png").exists()
    assert cli  # the module the subprocess ran


def test_a_signal_is_not_ignored_while_compiled_code_spins():
    """The main thread stuck inside one XLA call (an unguarded SVD of an inf) never runs the
    Python handler; the watchdog of ``interrupts.catch`` ends the process with 143 and says so."""
    code = (
        "import numpy as np, jax, jax.numpy as jnp\n"
        "from hrp_theory import interrupts\n"
        "interrupts.GRACE_S = 2.0\n"
        "x = np.random.default_rng(0).standard_normal((6, 6)).astype(np.float32)\n"
        "svd = jax.jit(lambda a: jnp.linalg.svd(a, full_matrices=False))\n"
        "jax.device_get(svd(jnp.asarray(x)))  # compiled before the signal can come\n"
        "x[0, 0] = np.inf\n"
        "with interrupts.catch():\n"
        "    print('start', flush=True)\n"
        "    jax.device_get(svd(jnp.asarray(x)))\n"
        "print('returned')\n"
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = xla_flags()  # the devices: the child's own configure()
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "start"
    time.sleep(1.0)  # inside LAPACK by now (the program was compiled before 'start')
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143
    assert "SIGTERM not handled after 2 s" in err
