"""The end-to-end LoRA study's train step, measured side by side in one process.

    python benchmarks/lora_seeds.py                     # a few minutes on 2 cores
    python benchmarks/lora_seeds.py --json lora.json --study hrp-results/lora/summary.json

* ``seed_vmap_speedup``: seconds per seed-step of S seeds as one vmapped program against the
  same S seeds run one after another (a one-seed program), MiniLM, every encoder kernel, r = 8,
  batch 16 × 32 tokens, AdamW, compile excluded;
* ``ratio_vs_peft``: PEFT's own PyTorch LoRA step (same model, r, targets, batch, tokens and
  optimizer; needs the ``peft`` extra) in seconds per step, over ours per seed-step (vmapped):
  above 1 means ours is faster;
* ``matmul_rows_speedup``: the ceiling on what vmapping can merge: GFLOP/s of the step's widest
  frozen matmul (tokens × 384 @ 384 × 1536, jitted XLA) with S seeds' tokens as rows against one
  seed's; near 1 means the cores are already full at one seed's batch;
* ``matmul_torch_over_xla``: PyTorch's GFLOP/s on that one-seed matmul over XLA's (with the
  ``peft`` extra): the share of ``ratio_vs_peft`` that is the matmul library, not the program;
* ``peak_rss_gb``: the process's peak resident memory;
* ``study_wall_s``: the summed compute of a finished study's runs, read from its
  ``summary.json`` (``--study``), if given.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def ours(seeds: int, steps: int, batch: int, tokens: int) -> tuple[float, float]:
    """``(vmapped, sequential)`` seconds per seed-step."""
    import jax
    import jax.numpy as jnp

    from hrp_theory.finetune import data, inits, programs
    from hrp_theory.finetune.config import LoraConfig

    def setup_for(s: int):
        cfg = LoraConfig(inits=("kaiming",), seeds=s, batch_size=batch, max_tokens=tokens)
        setup = data.prepare(cfg, progress=False)
        keys = data.seed_keys(cfg)
        order = data.batch_order(cfg, setup.task.train, steps + 1)
        opt = programs.optimizer(cfg, cfg.lr)
        prog = programs.programs(setup, opt, cfg.scale(cfg.r), 0)
        st, hy = inits.init_static(cfg), inits.init_hyper(cfg, cfg.lr)
        ad, off = inits.initialize("kaiming", setup.kernels, keys, st, hy)
        hd = data.heads(keys, setup.hidden, 2)
        return setup, prog, opt, ad, off, hd, order

    def per_step(s: int) -> float:
        setup, prog, opt, ad, off, hd, order = setup_for(s)
        tr, _ = programs.train(prog, opt, ad, off, hd, setup.base, order, 1)  # compile
        jax.block_until_ready(tr)
        t0 = time.perf_counter()
        tr, _ = programs.train(prog, opt, ad, off, hd, setup.base, order[:, 1:], steps)
        jax.block_until_ready(tr)
        return (time.perf_counter() - t0) / steps

    vmapped = per_step(seeds) / seeds
    one = per_step(1)  # one seed's program; S of them one after another cost S times this
    del jnp
    return vmapped, one


def peft_step(steps: int, batch: int, tokens: int) -> float | None:
    """Seconds per PEFT LoRA step (PyTorch, CPU), or None without the peft extra."""
    try:
        import torch
        import transformers  # noqa: F401  (finetune.peft.torch_bert)
        from peft import LoraConfig, get_peft_model
    except ImportError:
        return None
    from hrp_theory.finetune import peft
    from hrp_theory.models import bert, checkpoints, tasks

    path = checkpoints.minilm_path()
    task = tasks.load("polarity")
    model = peft.torch_bert(path)
    names = [
        peft.peft_module(p) for p, _ in checkpoints.kernels(checkpoints.load(path), "encoder/")
    ]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=names))
    head = torch.nn.Linear(384, 2)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.0)
    tok = bert.tokenizer(path, max_length=tokens, pad_to_multiple_of=tokens)
    rng = np.random.default_rng(0)

    def step():
        idx = rng.choice(task.train, batch, replace=False)
        ids, mask = bert.encode(tok, [task.texts[i] for i in idx])
        ids_t, mask_t = (
            torch.from_numpy(ids.astype(np.int64)),
            torch.from_numpy(mask.astype(np.int64)),
        )
        h = model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        m = mask_t[..., None].float()
        logits = head((h * m).sum(1) / m.sum(1))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(task.labels[idx]).long())
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


HIDDEN, WIDE = 384, 1536  # the step's widest frozen matmul: (tokens, HIDDEN) @ (HIDDEN, WIDE)


def _gflops(f, rows: int, repeats: int) -> float:
    f()  # warm-up (and compile)
    t0 = time.perf_counter()
    for _ in range(repeats):
        f()
    return 2 * rows * HIDDEN * WIDE * repeats / (time.perf_counter() - t0) / 1e9


def matmuls(seeds: int, batch: int, tokens: int, repeats: int = 50) -> dict:
    """GFLOP/s of ``(rows, HIDDEN) @ (HIDDEN, WIDE)`` in XLA at one seed's and S seeds' rows,
    and in PyTorch at one seed's (None without torch)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    w = rng.standard_normal((HIDDEN, WIDE), dtype=np.float32)
    x = rng.standard_normal((seeds * batch * tokens, HIDDEN), dtype=np.float32)
    one = batch * tokens
    mm, wj = jax.jit(jnp.matmul), jnp.asarray(w)
    out = {}
    for name, rows in (("one", one), ("all", len(x))):
        xj = jnp.asarray(x[:rows])
        out[name] = _gflops(lambda: mm(xj, wj).block_until_ready(), rows, repeats)
    try:
        import torch
    except ImportError:
        out["torch"] = None
    else:
        xt, wt = torch.from_numpy(x[:one]), torch.from_numpy(w)
        with torch.no_grad():
            out["torch"] = _gflops(lambda: torch.matmul(xt, wt), one, repeats)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--study", default=None, help="a finished study's summary.json")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from hrp_theory import runtime

    runtime.configure()
    vmapped, one = ours(a.seeds, a.steps, a.batch, a.tokens)
    peft = peft_step(a.steps, a.batch, a.tokens)
    mm = matmuls(a.seeds, a.batch, a.tokens)
    out = {
        "seeds": a.seeds,
        "batch_x_tokens": f"{a.batch}x{a.tokens}",
        "ours_vmapped_s_per_seed_step": vmapped,
        "ours_sequential_s_per_seed_step": one,
        "seed_vmap_speedup": one / vmapped,
        "peft_s_per_step": peft,
        "ratio_vs_peft": None if peft is None else peft / vmapped,
        "matmul_gflops_one_seed": mm["one"],
        "matmul_gflops_all_seeds": mm["all"],
        "matmul_rows_speedup": mm["all"] / mm["one"],
        "matmul_torch_over_xla": None if mm["torch"] is None else mm["torch"] / mm["one"],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "study_wall_s": None,
    }
    if a.study is not None:
        meta = json.loads(Path(a.study).read_text())["meta"]
        out["study_wall_s"] = meta["runs_seconds"]  # every run's compute, reused ones included
    for k, v in out.items():
        print(f"{k:>32}: {v:.4g}" if isinstance(v, float) else f"{k:>32}: {v}")
    if a.json:
        from hrp_theory.results import write_json

        write_json(a.json, out)


if __name__ == "__main__":
    main()
