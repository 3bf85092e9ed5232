"""A real fine-tuning change ``ΔW``: full fine-tuning of a BERT sentence encoder on a task.

Model: the encoder, mean pooling over real tokens, and a ``hidden×classes`` linear head, trained
on the task's fixed training split (``models.tasks``) and evaluated on its test split. Every
weight is trained (no LoRA) with optax AdamW, the learning rate decayed linearly to 0,
cross-entropy loss.
The result is a Flax checkpoint with the base's tree plus ``classifier/{kernel, bias}``, so
``ΔW = W_ft − W0`` per kernel is ``checkpoints.deltas(base, tuned)``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..models import bert, checkpoints, tasks, text
from ..seeds import root_key
from .config import FinetuneConfig


def _logits(model, params, ids, mask):
    h = bert.mean_pool(model.apply({"params": params["bert"]}, ids, mask), mask)
    return h @ params["classifier"]["kernel"] + params["classifier"]["bias"]


def predictions(model, params, tok, texts, batch_size: int = 64) -> np.ndarray:
    """The argmax class of each of ``texts``."""
    f = jax.jit(lambda p, i, m: jnp.argmax(_logits(model, p, i, m), -1))
    return np.concatenate(
        [np.asarray(f(params, i, m)) for i, m in bert.batches(tok, texts, batch_size)]
    )


def finetune(
    checkpoint, out, cfg: FinetuneConfig = FinetuneConfig(), data=None, progress: bool = True
) -> dict:
    """Fine-tune every weight of ``checkpoint`` on the task's training split; write
    ``out/flax_model.msgpack`` (+ config, tokenizer, ``finetune.json``). Returns the summary
    (test accuracy on the task's test split, per-example correctness, losses, timings)."""
    from tqdm.auto import tqdm

    from ..results import provenance, write_json

    task = tasks.load(cfg.task, data)
    tree = checkpoints.load(checkpoint)
    _, path = checkpoints.resolve(checkpoint)
    folder = checkpoints.model_folder(checkpoint)
    model = bert.Bert(bert.BertConfig.from_dict(checkpoints.read_config(checkpoint)))
    bert.check_length(model.cfg, cfg.max_length, "max_length")
    tok = bert.tokenizer(folder, max_length=cfg.max_length, pad_to_multiple_of=cfg.max_length)
    tr = task.train if cfg.train_limit is None else task.train[: cfg.train_limit]
    if cfg.batch_size > len(tr):
        raise ValueError(
            f"batch_size: {cfg.batch_size} is more than the {len(tr)} training examples; "
            "lower --batch-size"
        )
    texts, labels = task.texts, task.labels
    hidden, classes = model.cfg.hidden_size, len(task.classes)
    key = root_key(cfg.seed)
    params = {
        "bert": jax.tree.map(jnp.asarray, bert.encoder_params(tree, model)),
        "classifier": {
            "kernel": 0.02 * jax.random.normal(key, (hidden, classes)),
            "bias": jnp.zeros((classes,)),
        },
    }
    sched = optax.linear_schedule(cfg.lr, 0.0, cfg.steps)
    opt = optax.adamw(sched, weight_decay=cfg.weight_decay)
    state = opt.init(params)

    @jax.jit
    def step(params, state, ids, mask, y):
        def loss_fn(p):
            logits = _logits(model, p, ids, mask)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, g = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(cfg.seed)
    order, losses, t0 = np.array([], int), [], time.perf_counter()
    for _ in tqdm(range(cfg.steps), desc="fine-tune", unit="step", disable=not progress):
        if len(order) < cfg.batch_size:
            order = np.concatenate([order, rng.permutation(tr)])
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        ids, mask = bert.encode(tok, [texts[i] for i in idx])
        params, state, loss = step(params, state, ids, mask, labels[idx])
        losses.append(float(loss))
    train_s = time.perf_counter() - t0
    correct = predictions(model, params, tok, [texts[i] for i in task.test]) == labels[task.test]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in checkpoints.MODEL_FILES:
        if (folder / name).exists():
            (out / name).write_bytes((folder / name).read_bytes())
    tuned = dict(tree)
    tuned.update(jax.device_get(params["bert"]))
    tuned["classifier"] = jax.device_get(params["classifier"])
    checkpoints.save_msgpack(out / checkpoints.MSGPACK, tuned)
    summary = {
        "config": dataclasses.asdict(cfg),
        "base": str(path),
        "task": cfg.task,
        "train_examples": len(tr),
        "test_examples": len(task.test),
        "test_accuracy": float(correct.mean()),
        "test_correct": correct.astype(int).tolist(),
        "loss_first": losses[0],
        "loss_last10": float(np.mean(losses[-10:])),
        "losses": losses,
        "train_seconds": train_s,
        "provenance": provenance(),
    }
    write_json(out / "finetune.json", summary)
    return summary


def default_dir(task: str = "polarity") -> Path:
    """Where ``hrp-sim finetune --task TASK`` writes, and where ``hrp-sim real`` (polarity) and
    ``hrp-sim lora`` (its task) look for the fine-tuned MiniLM."""
    return text.data_dir().parent / f"minilm-{task}-ft"


def read_summary(folder) -> dict:
    p = Path(folder) / "finetune.json"
    return json.loads(p.read_text()) if p.exists() else {}
