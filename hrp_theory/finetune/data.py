"""What every run of an end-to-end study shares: the task, the base model, the target kernels,
the tokenized examples, and each seed's key, data order and head.

Seed i's key is ``fold_in(root, i)``; its data order and its head's init are the same for every
init, so differences between inits are paired seed by seed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..models import bert, checkpoints, tasks
from ..seeds import root_key
from . import adapters
from .config import LoraConfig

HEAD_STD = 0.02  # the head's init, as the full fine-tune's


class Setup(NamedTuple):
    """What every run of a study shares."""

    model: bert.Bert
    base: dict
    kernels: list
    task: tasks.Task
    ids: jax.Array  # (N, max_tokens) every example, tokenized once
    mask: jax.Array
    labels: jax.Array
    hidden: int


def prepare(cfg: LoraConfig, progress: bool = True) -> Setup:
    """Load the task, the base model and the targets; refuse ranks the kernels cannot hold."""
    task = tasks.load(cfg.task, cfg.data)
    ckpt = cfg.checkpoint if cfg.checkpoint is not None else checkpoints.minilm_path()
    tree = checkpoints.load(ckpt)
    model = bert.Bert(bert.BertConfig.from_dict(checkpoints.read_config(ckpt)))
    bert.check_length(model.cfg, cfg.max_tokens, "max_tokens")
    base = jax.tree.map(jnp.asarray, bert.encoder_params(tree, model))
    try:
        kernels = adapters.select(base, cfg.targets)
    except checkpoints.CheckpointError as e:
        raise ValueError(str(e).replace("layers:", "targets:", 1)) from None
    smallest = min(min(W.shape) for _, W in kernels)
    need = {"r": cfg.r}
    if "hrp" in cfg.inits:
        need["preheat_rank"] = cfg.preheat_rank
    if "lora-ga" in cfg.inits:
        need["2r (lora-ga)"] = 2 * cfg.r
    if "eva" in cfg.inits:
        need["round(eva_rho·r) (eva)"] = round(cfg.eva_rho * cfg.r)
    for what, k in need.items():
        if k > smallest:
            raise ValueError(
                f"{what}: {k} is larger than the smallest selected kernel's min(out, in) = "
                f"{smallest}; lower it or narrow --targets"
            )
    if cfg.batch_size > len(task.train):
        raise ValueError(
            f"batch_size: {cfg.batch_size} is more than the {len(task.train)} training examples "
            f"of {cfg.task}; lower --batch-size"
        )
    if cfg.curve_examples > len(task.test):
        raise ValueError(
            f"curve_examples: {cfg.curve_examples} is more than the {len(task.test)} test "
            f"examples of {cfg.task}; lower it (0 means all of them)"
        )
    if any(i in cfg.inits for i in ("aligned-ft", "aligned-ft-sigma")) and (
        cfg.checkpoint is not None
    ):
        raise ValueError(
            "inits: aligned-ft and aligned-ft-sigma need the full fine-tune of the installed "
            "MiniLM; drop them or --checkpoint"
        )
    tok = bert.tokenizer(
        checkpoints.model_folder(ckpt),
        max_length=cfg.max_tokens,
        pad_to_multiple_of=cfg.max_tokens,
    )
    ids, mask = zip(*bert.batches(tok, task.texts, 512))
    return Setup(
        model=model,
        base=base,
        kernels=kernels,
        task=task,
        ids=jnp.asarray(np.concatenate(ids)),
        mask=jnp.asarray(np.concatenate(mask)),
        labels=jnp.asarray(task.labels),
        hidden=model.cfg.hidden_size,
    )


def curve_split(cfg: LoraConfig, task: tasks.Task) -> np.ndarray:
    """The test examples every curve checkpoint is measured on: ``curve_examples`` of the fixed
    test split drawn by a fixed permutation (whatever the study's seed; all of it for 0). Not its
    first ones: the split is sorted, and a data file sorted by label would give one class."""
    if cfg.curve_examples == 0:
        return task.test
    pick = np.random.default_rng(tasks.SPLIT_SEED + 1).permutation(len(task.test))
    return np.sort(task.test[pick[: cfg.curve_examples]])


def seed_keys(cfg: LoraConfig) -> jax.Array:
    root = root_key(cfg.seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(cfg.seeds))


def batch_order(cfg: LoraConfig, train: np.ndarray, steps: int) -> np.ndarray:
    """``(S, steps, batch)`` training indices: seed i walks through fresh permutations of the
    training split drawn from ``(seed, i)``; every init of a seed sees this order."""
    out = np.empty((cfg.seeds, steps, cfg.batch_size), np.int32)
    for i in range(cfg.seeds):
        rng = np.random.default_rng([cfg.seed, i])
        need = steps * cfg.batch_size
        order = np.concatenate([rng.permutation(train) for _ in range(-(-need // len(train)))])
        out[i] = order[:need].reshape(steps, cfg.batch_size)
    return out


def heads(keys: jax.Array, hidden: int, classes: int) -> dict:
    """Each seed's head init (the same for every init of the seed)."""
    k = jax.vmap(lambda key: jax.random.fold_in(key, 0x48454144))(keys)  # "HEAD"
    return {
        "kernel": jax.vmap(lambda key: HEAD_STD * jax.random.normal(key, (hidden, classes)))(k),
        "bias": jnp.zeros((keys.shape[0], classes)),
    }
