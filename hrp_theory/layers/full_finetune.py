"""A real fine-tuning change ``ΔW``: full fine-tuning of a BERT sentence encoder on polarity.

Model: the encoder, mean pooling over real tokens, and a ``hidden×2`` linear head. Every weight is
trained (no LoRA) with optax AdamW, the learning rate decayed linearly to 0, cross-entropy loss.
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

from ..models import bert, checkpoints, text
from ..seeds import root_key
from .config import FinetuneConfig


def _logits(model, params, ids, mask):
    h = bert.mean_pool(model.apply({"params": params["bert"]}, ids, mask), mask)
    return h @ params["classifier"]["kernel"] + params["classifier"]["bias"]


def accuracy(model, params, tok, texts, labels, batch_size: int = 64) -> float:
    """Share of ``texts`` whose argmax logit matches ``labels``."""
    f = jax.jit(lambda p, i, m: jnp.argmax(_logits(model, p, i, m), -1))
    pred = np.concatenate(
        [np.asarray(f(params, i, m)) for i, m in bert.batches(tok, texts, batch_size)]
    )
    return float(np.mean(pred == labels))


def finetune(
    checkpoint, out, cfg: FinetuneConfig = FinetuneConfig(), data=None, progress: bool = True
) -> dict:
    """Fine-tune ``checkpoint`` on the polarity set; write ``out/flax_model.msgpack`` (+ config,
    tokenizer, ``finetune.json``). Returns the summary (held-out accuracy, losses, timings)."""
    from tqdm.auto import tqdm

    from ..results import provenance, write_json

    texts, labels = text.load_polarity(data)
    tree = checkpoints.load(checkpoint)
    _, path = checkpoints.resolve(checkpoint)
    folder = checkpoints.model_folder(checkpoint)
    model = bert.Bert(bert.BertConfig.from_dict(checkpoints.read_config(checkpoint)))
    tok = bert.tokenizer(folder, max_length=cfg.max_length, pad_to_multiple_of=cfg.max_length)
    tr, te = text.split(len(texts), cfg.held_out, cfg.seed)
    if cfg.train_limit is not None:
        tr = tr[: cfg.train_limit]
    hidden = model.cfg.hidden_size
    key = root_key(cfg.seed)
    params = {
        "bert": jax.tree.map(jnp.asarray, bert.encoder_params(tree)),
        "classifier": {
            "kernel": 0.02 * jax.random.normal(key, (hidden, 2)),
            "bias": jnp.zeros((2,)),
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
    acc = accuracy(model, params, tok, [texts[i] for i in te], labels[te])

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
        "train_sentences": len(tr),
        "held_out_sentences": len(te),
        "held_out_accuracy": acc,
        "loss_first": losses[0],
        "loss_last10": float(np.mean(losses[-10:])),
        "losses": losses,
        "train_seconds": train_s,
        "provenance": provenance(),
    }
    write_json(out / "finetune.json", summary)
    return summary


def default_dir() -> Path:
    """Where ``hrp-sim finetune`` writes and ``hrp-sim real`` looks for the fine-tuned MiniLM."""
    return text.data_dir().parent / "minilm-polarity-ft"


def read_summary(folder) -> dict:
    p = Path(folder) / "finetune.json"
    return json.loads(p.read_text()) if p.exists() else {}
