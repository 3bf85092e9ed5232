"""The end-to-end LoRA study: every init fine-tunes the same model on a real task, seeds paired.

For each init (and each learning rate of the grid) the S seeds run as one jitted program: the
adapters, heads and optimizer states carry a leading seed axis (``jax.vmap``), the frozen base is
shared. Seed i's key is ``fold_in(root, i)``; its data order, its head's init and its random
factors are the same for every init, so differences between inits are paired.

A run (one init at one learning rate) is saved atomically in ``OUT/runs/`` when it finishes, with
the settings it depends on; a rerun reuses the runs whose settings match, so an interrupted study
resumes where it stopped.

Per run: the training loss at every step, validation accuracy every ``eval_every`` steps, test
accuracy and loss at the end (HRP also after ``steps − T_p`` main steps: the same total budget,
preheat counted), λ_max of the loss Hessian at init (power iteration on Hessian-vector products,
over the trainable parameters: adapters and head; at the common learning rate only, since the
init does not depend on the learning rate, except HRP's through its preheat) and, per kernel, the
captured energy at init (raw and whitened, as in ``hrp-sim real``) of the run's own final update
and, when the full fine-tune of ``hrp-sim finetune`` exists for the task, of its ``ΔW``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import inits as core_inits
from ..curvature import lam_max_power
from ..preheat import thin_svd_of_product
from ..results import write_npz
from ..seeds import root_key
from . import bert, checkpoints, finetune, lora_inits, lora_model, tasks
from .config import LoraConfig, lr_label

EVAL_BATCH = 64
VAL_CURVE = 128  # validation examples of the curve's intermediate points (the end uses all)
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
    base = jax.tree.map(jnp.asarray, bert.encoder_params(tree))
    try:
        kernels = lora_model.select(base, cfg.targets)
    except checkpoints.CheckpointError as e:
        raise ValueError(str(e).replace("layers:", "targets:", 1)) from None
    smallest = min(min(W.shape) for _, W in kernels)
    need = {"r": cfg.r}
    if "hrp" in cfg.inits:
        need["preheat_rank"] = cfg.preheat_rank
    if "lora-ga" in cfg.inits:
        need["2r (lora-ga)"] = 2 * cfg.r
    for what, k in need.items():
        if k > smallest:
            raise ValueError(
                f"{what}: {k} is larger than the smallest selected kernel's min(out, in) = "
                f"{smallest}; lower it or narrow --targets"
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


# ---------------------------------------------------------------------------------------------
# seeds: keys, data order, heads


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


# ---------------------------------------------------------------------------------------------
# the jitted programs (seeds vmapped)


def _optimizer(cfg: LoraConfig, lr: float):
    if cfg.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optax.adam(lr)
    return optax.sgd(lr)


def _loss(model, s, trainable, base, offsets, ids, mask, y):
    lg = lora_model.logits(model, base, trainable, offsets, s, ids, mask)
    return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()


class Programs(NamedTuple):
    step: Any
    evaluate: Any
    lam_max: Any
    grads: Any


def programs(setup: Setup, opt, s, hessian_iters: int) -> Programs:
    """The seed-vmapped jitted train step, evaluation, Hessian power iteration and full-weight
    gradient of one scale ``s`` and optimizer."""
    model = setup.model
    data = (setup.ids, setup.mask, setup.labels)

    def batch(idx):
        return tuple(jnp.take(a, idx, axis=0) for a in data)

    def step(trainable, state, base, offsets, idx):
        loss, g = jax.value_and_grad(_loss, argnums=2)(
            model, s, trainable, base, offsets, *batch(idx)
        )
        updates, state = opt.update(g, state, trainable)
        return optax.apply_updates(trainable, updates), state, loss

    def evaluate(trainable, base, offsets, idx, valid):
        ids, mask, y = batch(idx)
        lg = lora_model.logits(model, base, trainable, offsets, s, ids, mask)
        ce = optax.softmax_cross_entropy_with_integer_labels(lg, y)
        right = (jnp.argmax(lg, -1) == y).astype(ce.dtype)
        return jnp.sum(ce * valid), jnp.sum(right * valid)

    def lam_max(trainable, base, offsets, idx, key):
        args = batch(idx)
        loss = lambda t: _loss(model, s, t, base, offsets, *args)
        return lam_max_power(loss, trainable, key, hessian_iters)

    def grads(kernels, head, base, idx):
        """``∂L/∂W`` (out, in) of each kernel at the base, zero adapters, averaged over batches."""

        def loss_of(ks, i):
            tree = checkpoints.flatten(base)
            tree.update({f"{p}/kernel": K for p, K in ks.items()})
            t = {"lora": {}, "head": head}
            return _loss(model, s, t, checkpoints.unflatten(tree), {}, *batch(i))

        g = jax.lax.map(lambda i: jax.grad(loss_of)(kernels, i), idx)
        return {p: jnp.mean(x, 0).T for p, x in g.items()}

    return Programs(
        step=jax.jit(jax.vmap(step, in_axes=(0, 0, None, 0, 0)), donate_argnums=(0, 1)),
        evaluate=jax.jit(jax.vmap(evaluate, in_axes=(0, None, 0, None, None))),
        lam_max=jax.jit(jax.vmap(lam_max, in_axes=(0, None, 0, 0, 0))),
        grads=jax.jit(grads),
    )


def evaluate(prog: Programs, trainable, base, offsets, split: np.ndarray) -> tuple[Any, Any]:
    """``(loss, accuracy)`` per seed on ``split`` (batches of ``EVAL_BATCH``; the last padded)."""
    n = len(split)
    pad = (-n) % EVAL_BATCH
    idx = np.concatenate([split, np.repeat(split[:1], pad)]).reshape(-1, EVAL_BATCH)
    valid = np.ones(idx.size, np.float32)
    valid[n:] = 0.0
    valid = valid.reshape(idx.shape)
    tot_l, tot_a = 0.0, 0.0
    for b, v in zip(idx, valid):
        l, a = prog.evaluate(trainable, base, offsets, jnp.asarray(b), jnp.asarray(v))
        tot_l, tot_a = tot_l + np.asarray(l), tot_a + np.asarray(a)
    return tot_l / n, tot_a / n


# ---------------------------------------------------------------------------------------------
# inputs of the inits: second moments, gradients, the preheat


def second_moments(setup: Setup, cfg: LoraConfig, progress: bool) -> dict:
    """``E[x xᵀ]`` of each target kernel's inputs over the first ``sigma_examples`` training
    examples (float64 on the host)."""
    idx = setup.task.train[: cfg.sigma_examples]
    ids, mask = np.asarray(setup.ids)[idx], np.asarray(setup.mask)[idx]
    batches = [(ids[i : i + 64], mask[i : i + 64]) for i in range(0, len(idx), 64)]
    moments, _ = bert.input_second_moments(setup.model, setup.base, batches, progress=progress)
    return {p: moments[p] for p, _ in setup.kernels}


def full_gradients(setup: Setup, cfg: LoraConfig, prog: Programs, hd: dict, order) -> dict:
    """``{path: (S, out, in)}``: each seed's full-weight gradient of the task loss at ``W0``
    (with the seed's head), averaged over its first ``grad_batches`` batches."""
    kernels = {p: W.T for p, W in setup.kernels}  # HF layout (in, out)
    per_seed = []
    for i in range(cfg.seeds):
        head = jax.tree.map(lambda x: x[i], hd)
        per_seed.append(
            prog.grads(kernels, head, setup.base, jnp.asarray(order[i, : cfg.grad_batches]))
        )
    return {p: jnp.stack([g[p] for g in per_seed]) for p, _ in setup.kernels}


def _static(cfg: LoraConfig) -> core_inits.InitStatic:
    return core_inits.InitStatic(r=cfg.r, form="classic", base=lora_inits.BASE, p=cfg.preheat_rank)


def _hyper(cfg: LoraConfig, lr: float) -> core_inits.InitHyper:
    f = lambda v: jnp.asarray(v, jnp.float32)
    return core_inits.InitHyper(
        s=f(cfg.scale(cfg.r)),
        s_p=f(cfg.scale(cfg.preheat_rank)),
        std=f(0.0),  # set per kernel width by lora_inits (gaussian_std)
        lr=f(lr),
        lr_p=f(lr),
        momentum=f(0.0),
        weight_decay=f(cfg.weight_decay),
    )


def stop_if_signalled() -> None:
    """Raise ``KeyboardInterrupt`` if SIGINT/SIGTERM arrived: the handler's own exception is lost
    when the signal lands inside a garbage-collection callback (JAX registers one), so the loops
    also check the recorded signal."""
    from .. import interrupts

    if interrupts.received() is not None:
        raise KeyboardInterrupt


def train(
    prog: Programs,
    opt,
    adapters: dict,
    offsets: dict,
    hd: dict,
    base: dict,
    order: np.ndarray,
    steps: int,
    on_step=None,
    progress=None,
):
    """Run ``steps`` seed-vmapped steps from ``adapters`` and heads ``hd``; returns the trained
    ``{"lora", "head"}`` and the ``(S, steps)`` training losses. ``on_step(k, trainable)`` is
    called after step k (1-based)."""
    # fresh copies: the train step donates its inputs, and the caller keeps the init
    trainable = jax.tree.map(jnp.array, {"lora": adapters, "head": hd})
    state = jax.vmap(opt.init)(trainable)
    losses = []
    for k in range(steps):
        stop_if_signalled()
        trainable, state, loss = prog.step(
            trainable, state, base, offsets, jnp.asarray(order[:, k])
        )
        losses.append(loss)
        if on_step is not None:
            on_step(k + 1, trainable)
        if progress is not None:
            progress.update(1)
    return trainable, np.asarray(jnp.stack(losses, 1), np.float64)


# ---------------------------------------------------------------------------------------------
# captured energy at init (the bridge to the theory)


@jax.jit
def _captured(S_r, V_r, X):
    """``‖S_r ⊙ V_rᵀ orth(X)‖² / ‖S_r‖²``: the share of a rank-r target's energy that ``col(X)``
    captures (``metrics.direction_metrics``'s definition)."""
    from ..linalg import orth

    proj = V_r.T @ orth(X)
    return jnp.sum((S_r[:, None] * proj) ** 2) / jnp.sum(S_r**2)


def whitenings(moments: dict) -> dict:
    """``Σ^{1/2}`` per kernel (eigenvalues below 1e-12·λ_max clipped)."""
    out = {}
    for p, S in moments.items():
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam / lam.max(), 1e-12)
        out[p] = jnp.asarray((Q * np.sqrt(lam)) @ Q.T, jnp.float32)
    return out


def _top_r(B, A, r, half):
    """Top-r ``(S, V)`` of ``B Aᵀ Σ^{1/2}`` (``half`` None: raw) from its factors."""
    A = A if half is None else half @ A
    _, S, V = thin_svd_of_product(B, A, r)
    return S, V


_top_r_jit = jax.jit(_top_r, static_argnums=2)


def captured_lora(init: dict, final: dict, offsets: dict, r: int, halves: dict) -> np.ndarray:
    """``(S, kernels, 2)`` raw and whitened captured energy, by each seed's init subspace
    ``col(A₀)``, of the seed's own final update ``s·(B Aᵀ − B₀A₀ᵀ)``."""
    out = []
    for path, a0 in init.items():
        fin = final[path]
        B = fin.B if path not in offsets else jnp.concatenate([fin.B, -offsets[path].B], -1)
        A = fin.A if path not in offsets else jnp.concatenate([fin.A, offsets[path].A], -1)
        per = []
        for half in (None, halves[path]):
            h = half if half is not None else jnp.eye(A.shape[-2], dtype=A.dtype)
            S, V = jax.vmap(lambda b, a: _top_r_jit(b, a, r, h))(B, A)
            per.append(jax.vmap(lambda s, v, a: _captured(s, v, h @ a))(S, V, a0.A))
        out.append(jnp.stack(per, -1))
    return np.asarray(jnp.stack(out, 1), np.float64)


def target_directions(deltas: dict, r: int, halves: dict) -> dict:
    """Per kernel, raw and whitened top-r ``(S_r, V_r)`` of the full fine-tune's ``ΔW``."""
    out = {}
    for path, dW in deltas.items():
        dW = np.asarray(dW, np.float64)
        pair = []
        for half in (None, np.asarray(halves[path], np.float64)):
            M = dW if half is None else dW @ half
            _, S, Vt = np.linalg.svd(M, full_matrices=False)
            pair.append((jnp.asarray(S[:r], jnp.float32), jnp.asarray(Vt[:r].T, jnp.float32)))
        out[path] = pair
    return out


def captured_target(init: dict, targets: dict, halves: dict) -> np.ndarray:
    """``(S, kernels, 2)`` raw and whitened captured energy of the full fine-tune's ``ΔW`` by
    each seed's init subspace ``col(A₀)``."""
    out = []
    for path, a0 in init.items():
        per = []
        for (S_r, V_r), half in zip(targets[path], (None, halves[path])):
            X = a0.A if half is None else jnp.einsum("ij,sjr->sir", half, a0.A)
            per.append(jax.vmap(lambda x: _captured(S_r, V_r, x))(X))
        out.append(jnp.stack(per, -1))
    return np.asarray(jnp.stack(out, 1), np.float64)


def _full_finetune_folder(cfg: LoraConfig) -> Path | None:
    """``hrp-sim finetune``'s folder for this study (polarity on the default base), if it ran."""
    folder = finetune.default_dir()
    default_base = cfg.checkpoint is None
    if cfg.task != "polarity" or not default_base or not (folder / checkpoints.MSGPACK).exists():
        return None
    return folder


def full_finetune_reference(cfg: LoraConfig) -> dict | None:
    """The full fine-tune's own figures (``finetune.json``), the study's reference row. It ran on
    its own split (``held_out`` of the 4000 sentences, which overlaps this study's test split)
    and budget, so it is reported beside the table, not evaluated on the study's test split."""
    folder = _full_finetune_folder(cfg)
    got = finetune.read_summary(folder) if folder is not None else {}
    if "held_out_accuracy" not in got:
        return None
    c = got["config"]
    return {
        "held_out_accuracy": got["held_out_accuracy"],
        "held_out_examples": got["held_out_sentences"],
        "steps": c["steps"],
        "batch_size": c["batch_size"],
        "max_tokens": c["max_length"],
        "lr": c["lr"],
        "seeds": 1,
        "command": "hrp-sim finetune",
    }


def full_finetune_deltas(setup: Setup, cfg: LoraConfig) -> dict | None:
    """``{path: ΔW}`` of ``hrp-sim finetune``'s checkpoint of the installed MiniLM (polarity and
    the default base only; None if absent)."""
    folder = _full_finetune_folder(cfg)
    if folder is None:
        return None
    tuned = checkpoints.load(folder / checkpoints.MSGPACK)
    base = jax.tree.map(np.asarray, setup.base)
    return dict(checkpoints.deltas(base, bert.encoder_params(tuned), cfg.targets))


# ---------------------------------------------------------------------------------------------
# one run: one init at one learning rate, every seed


class Shared(NamedTuple):
    """What the runs of a study share beyond ``Setup``: per-seed keys, heads and data order, and
    the inputs of the data-aware inits."""

    keys: jax.Array
    heads: dict
    order: np.ndarray  # (S, steps, batch)
    moments: dict  # {path: E[xxᵀ]} (float64, host)
    halves: dict  # {path: Σ^{1/2}} normalised
    targets: dict | None  # full fine-tune ΔW's top-r directions, or None


def run_key(cfg: LoraConfig, name: str, lr: float, shared: Shared) -> str:
    """The settings one run depends on (a saved run is reused only if they match)."""
    d = dataclasses.asdict(cfg)
    for f in ("inits", "lr_grid", "lr", "target_loss"):  # target_loss: the report's only
        d.pop(f)
    d |= {"init": name, "run_lr": lr, "bridge_target": shared.targets is not None}
    return json.dumps(d, sort_keys=True)


_PROGRAMS: dict = {}  # the current study's compiled programs (cleared by run_study)


def _programs(setup: Setup, cfg: LoraConfig, lr: float, s: float, iters: int) -> Programs:
    """``programs`` cached per study and settings: the inits of a study share their compiled
    train step, evaluation and power iteration."""
    key = (id(setup), cfg.optimizer, cfg.weight_decay, lr, s, iters)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = programs(setup, _optimizer(cfg, lr), s, iters)
    return _PROGRAMS[key]


def run_one(setup: Setup, cfg: LoraConfig, shared: Shared, name: str, lr: float, progress=True):
    """Train init ``name`` at ``lr`` on every seed; returns the run's arrays (module doc)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    opt = _optimizer(cfg, lr)
    s = cfg.scale(cfg.r)
    prog = _programs(setup, cfg, lr, s, cfg.hessian_iters)
    st, hy = _static(cfg), _hyper(cfg, lr)
    base, task = setup.base, setup.task
    bar = tqdm(
        total=cfg.steps + (cfg.preheat_steps if name == "hrp" else 0),
        desc=f"{name} lr={lr:g}",
        unit="step",
        disable=not progress,
    )
    out: dict[str, Any] = {}
    offsets: dict = {}
    if name == "hrp":
        s_p = cfg.scale(cfg.preheat_rank)
        prog_p = _programs(setup, cfg, lr, s_p, 0)
        start = lora_inits.preheat_start(setup.kernels, shared.keys, st, hy)
        pre, _ = train(
            prog_p,
            opt,
            start,
            {},
            shared.heads,
            base,
            shared.order,
            cfg.preheat_steps,
            progress=bar,
        )
        adapters = lora_inits.from_preheat(pre["lora"], cfg.r, hy.std)
        out["preheat_seconds"] = time.perf_counter() - t0
    else:
        grads = None
        if name in lora_inits.NEEDS_GRADIENT:
            grads = full_gradients(setup, cfg, prog, shared.heads, shared.order)
        moments = None
        if name in lora_inits.NEEDS_SIGMA:
            moments = {p: jnp.asarray(m, jnp.float32) for p, m in shared.moments.items()}
        adapters, offsets = lora_inits.initialize(
            name, setup.kernels, shared.keys, st, hy, grads=grads, moments=moments
        )
    init = adapters
    if cfg.hessian_iters > 0 and lr == cfg.lr:
        hkeys = jax.vmap(lambda k: jax.random.fold_in(k, 0x48455353))(shared.keys)  # "HESS"
        trainable0 = {"lora": adapters, "head": shared.heads}
        out["lam_max"] = np.asarray(
            prog.lam_max(trainable0, base, offsets, jnp.asarray(shared.order[:, 0]), hkeys),
            np.float64,
        )
    eval_steps = sorted({*range(cfg.eval_every, cfg.steps, cfg.eval_every), cfg.steps})
    val, equal_total = [], cfg.steps - cfg.preheat_steps if name == "hrp" else None

    def on_step(k, trainable):
        if k in eval_steps:
            split = task.val if k == cfg.steps else task.val[:VAL_CURVE]
            val.append(evaluate(prog, trainable, base, offsets, split))
        if k == equal_total:
            out["test_loss_equal_total"], out["test_acc_equal_total"] = evaluate(
                prog, trainable, base, offsets, task.test
            )

    first = {"lora": jax.tree.map(jnp.array, adapters), "head": shared.heads}
    l0, a0 = evaluate(prog, first, base, offsets, task.val[:VAL_CURVE])
    final, losses = train(
        prog, opt, adapters, offsets, shared.heads, base, shared.order, cfg.steps, on_step, bar
    )
    bar.close()
    out["test_loss"], out["test_acc"] = evaluate(prog, final, base, offsets, task.test)
    if equal_total is None or equal_total < 1:
        out["test_loss_equal_total"], out["test_acc_equal_total"] = (
            out["test_loss"],
            out["test_acc"],
        )
    out["train_loss"] = losses
    out["val_steps"] = np.asarray([0, *eval_steps])
    out["val_loss"] = np.stack([l0, *[v[0] for v in val]], 1)
    out["val_acc"] = np.stack([a0, *[v[1] for v in val]], 1)
    out["val_loss_final"], out["val_acc_final"] = val[-1]
    out["captured_lora"] = captured_lora(init, final["lora"], offsets, cfg.r, shared.halves)
    for path, ab in final["lora"].items():  # seed 0's trained adapter and head (--export-peft)
        out[f"seed0|{path}|A"], out[f"seed0|{path}|B"] = ab.A[0], ab.B[0]
    for f, v in final["head"].items():
        out[f"seed0|head|{f}"] = v[0]
    out["moves_w0"] = np.asarray(bool(offsets))
    if shared.targets is not None:
        out["captured_target"] = captured_target(init, shared.targets, shared.halves)
    out["seconds"] = time.perf_counter() - t0
    return {k: np.asarray(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# the study


def load_saved(path: Path, key: str) -> dict | None:
    """A saved run's arrays if its settings are ``key``, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["run_key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "run_key"}
    except (OSError, ValueError, KeyError):
        return None  # unreadable or from another version: run it again


def run_name(name: str, lr: float) -> str:
    """``INIT@lr=LR``: the run's file stem and key (``config.lr_label``: never two rates alike)."""
    return f"{name}@lr={lr_label(lr)}"


def run_study(cfg: LoraConfig, out, progress: bool = True) -> dict:
    """Every init at every learning rate; returns ``{run name: arrays}`` plus ``"_meta"``.
    Finished runs are saved in ``out/runs/`` and reused when their settings match."""
    t0 = time.perf_counter()
    _PROGRAMS.clear()
    setup = prepare(cfg, progress)
    keys = seed_keys(cfg)
    order = batch_order(cfg, setup.task.train, max(cfg.steps, cfg.preheat_steps, cfg.grad_batches))
    moments = second_moments(setup, cfg, progress)
    halves = whitenings(moments)
    deltas = full_finetune_deltas(setup, cfg)
    shared = Shared(
        keys=keys,
        heads=heads(keys, setup.hidden, len(setup.task.classes)),
        order=order,
        moments=moments,
        halves=halves,
        targets=None if deltas is None else target_directions(deltas, cfg.r, halves),
    )
    runs_dir = Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs, reused = {}, []
    for lr in cfg.lrs:
        for name in cfg.inits:
            key = run_key(cfg, name, lr, shared)
            path = runs_dir / f"{run_name(name, lr)}.npz"
            stop_if_signalled()
            got = load_saved(path, key)
            if got is None:
                got = run_one(setup, cfg, shared, name, lr, progress)
                write_npz(path, got | {"run_key": np.asarray(key)})
            else:
                reused.append(run_name(name, lr))
            runs[run_name(name, lr)] = got
    meta = {
        "kernels": [p for p, _ in setup.kernels],
        "classes": list(setup.task.classes),
        "split_sizes": {k: len(getattr(setup.task, k)) for k in ("train", "val", "test")},
        "reused_runs": reused,
        "bridge_target": deltas is not None,
        "full_finetune": full_finetune_reference(cfg),
        "wall_seconds": time.perf_counter() - t0,
        # the compute of every run, reused ones included: the study's cost from scratch
        "runs_seconds": float(sum(float(r["seconds"]) for r in runs.values())),
    }
    return {"runs": runs, "meta": meta}


def seed0_adapter(run: dict, name: str) -> tuple[dict, dict]:
    """Seed 0's trained ``({path: LoraParams}, head)`` of a run (``--export-peft``)."""
    from ..lora import LoraParams

    if "moves_w0" not in run:
        raise ValueError(
            f"export_peft: the saved run of {name} predates adapter export; delete its file "
            "under OUT/runs/ and rerun to export it"
        )
    if bool(run["moves_w0"]):
        raise ValueError(
            f"export_peft: {name} moves W0 (W0 ← W0 − s·B₀A₀ᵀ), which a PEFT LoRA adapter cannot "
            "carry; export an init that keeps W0 (kaiming, gaussian, eva, lora-one, hrp) or drop "
            "--export-peft"
        )
    paths = sorted({k.split("|")[1] for k in run if k.startswith("seed0|") and "|head|" not in k})
    adapters = {p: LoraParams(B=run[f"seed0|{p}|B"], A=run[f"seed0|{p}|A"]) for p in paths}
    head = {f: run[f"seed0|head|{f}"] for f in ("kernel", "bias")}
    return adapters, head
