"""hrp_theory.linalg: jnp.linalg's results, and no batched LAPACK call in any compiled program
(the jaxlib 0.10.2 CPU deadlock, see hrp_theory/runtime.py and tools/jaxlib_lapack_deadlock)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import config

from hrp_theory import linalg, seeds
from hrp_theory.experiment import simulate_seed, split_config

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
