"""``hrp-sim lora``: the end-to-end LoRA study on a real task (``real`` extra)."""

from __future__ import annotations

import argparse
import math
import sys
import time

from ._shared import Flag, default_of, guarded, output_parent, quiet_parent, seed_parent
from .real import need_real_extra

FLAGS = [
    Flag("--task", "task", str, "polarity | bbc (default %(default)s)"),
    Flag(
        "--inits",
        "inits",
        str,
        "comma list (default %(default)s; aligned-ft and aligned-ft-sigma, the oracles from the "
        "full fine-tune's ΔW, need `hrp-sim finetune --task TASK` first)",
    ),
    Flag(
        "--form",
        "forms",
        str,
        "classic | freeze-a | classic,freeze-a: which LoRA factors train (freeze-a: A fixed at "
        "its init, the HRP theory's setting; default %(default)s)",
    ),
    Flag("--r", "r", int, "LoRA rank (default %(default)s)"),
    Flag("--alpha", "alpha", float, "LoRA α; scale α/r (default %(default)s)"),
    Flag("--scaling", "scaling", str, "alpha/r | alpha/sqrt-r (default %(default)s)"),
    Flag("--preheat-rank", "preheat_rank", int, "HRP's p (default %(default)s)"),
    Flag("--preheat-steps", "preheat_steps", int, "HRP's T_p (default %(default)s)"),
    Flag("--steps", "steps", int, "main-run steps (default %(default)s)"),
    Flag("--lr", "lr", float, "common learning rate (default %(default)s)"),
    Flag(
        "--lr-grid",
        "lr_grid",
        str,
        "comma list of learning rates, each init at each; best per init on validation "
        "(must contain --lr; default: none)",
    ),
    Flag("--optimizer", "optimizer", str, "adamw | adam | sgd (default %(default)s)"),
    Flag("--batch-size", "batch_size", int, "(default %(default)s)"),
    Flag("--max-tokens", "max_tokens", int, "token cap per example (default %(default)s)"),
    Flag("--targets", "targets", str, "regex over kernel paths (default %(default)r: all 36)"),
    Flag(
        "--seeds",
        "seeds",
        int,
        "seeds per init, vmapped (default %(default)s: a quick look; the README's results use "
        "20, and below 5 no interval is printed)",
    ),
    Flag(
        "--curve-steps",
        "curve_steps",
        str,
        "comma list of main-run steps where test accuracy is measured along the run "
        "(default: 20, 50, 80, 100 %% of --steps)",
    ),
    Flag(
        "--curve-examples",
        "curve_examples",
        int,
        "test examples of every curve point, the same at each (0: all; default %(default)s)",
    ),
    Flag(
        "--grad-batches",
        "grad_batches",
        int,
        "LoRA-GA/LoRA-One gradient batches (default %(default)s)",
    ),
    Flag(
        "--sigma-examples", "sigma_examples", int, "examples EVA/CorDA read (default %(default)s)"
    ),
    Flag(
        "--eva-rho", "eva_rho", float, "EVA's rank redistribution ρ, PEFT's (default %(default)s)"
    ),
    Flag(
        "--lanczos-steps",
        "lanczos_steps",
        int,
        "Lanczos steps for the Hessian's extremes at init (0: skip; default %(default)s)",
    ),
    Flag(
        "--curvature-seeds",
        "curvature_seeds",
        int,
        "seeds the curvature is measured on (default %(default)s)",
    ),
    Flag(
        "--target-loss",
        "target_loss",
        float,
        "training loss for steps-to-target (default %(default)s)",
    ),
    Flag("--checkpoint", "checkpoint", str, "base model (default: the installed MiniLM)"),
    Flag("--data", "data", str, "the task's data file or folder (default: installed/fetched)"),
]


def _floats(text: str | None, field: str):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(
            f"{field}: {text!r} is not a comma list of numbers such as 1e-4,3e-4"
        ) from None


def config(a: argparse.Namespace):
    from ..finetune.config import LoraConfig
    from ..validation import names

    kw = {f.target: getattr(a, f.dest) for f in FLAGS}
    kw["inits"] = names(kw["inits"], "inits")
    kw["forms"] = names(kw["forms"], "form")
    kw["lr_grid"] = _floats(kw["lr_grid"], "lr_grid")
    curve = _floats(kw["curve_steps"], "curve_steps")
    if curve is not None and any(not math.isfinite(v) or v != int(v) for v in curve):
        raise ValueError(f"curve_steps: {kw['curve_steps']!r} must be whole steps such as 10,25,50")
    kw["curve_steps"] = None if curve is None else tuple(int(v) for v in curve)
    return LoraConfig(seed=a.seed, **kw)


def run_lora(a: argparse.Namespace) -> int:
    cfg = config(a)
    need_real_extra()
    if a.export_peft is not None:
        from ..results import check_output_dir

        check_output_dir(a.export_peft, "export_peft")

    def work() -> int:
        from .. import interrupts
        from ..finetune import peft, report, study, summary
        from ._shared import report_written

        t0 = time.perf_counter()
        log = (lambda text: print(text, file=sys.stderr)) if not a.quiet else None
        done = study.run_study(cfg, a.out, progress=not a.quiet, log=log)
        summ = summary.summarize_study(done, cfg)
        with interrupts.deferred() as d:
            paths = report.save(summ, done, cfg, a.out, a.json, figures=not a.no_figures)
            if a.export_peft is not None:
                paths |= peft.export_study(done, cfg, a.export_peft)
        print(report.table(summ))
        print(f"wall time {time.perf_counter() - t0:.1f} s")
        return report_written(paths, d["signal"])

    # Interrupted (130, 143): the console entry (``cli.entry``) leaves without interpreter
    # teardown, which was seen to crash (SIGSEGV, about 1 run in 5) after a signal had stopped
    # a study mid-step.
    return guarded(a, work, "lora")


def add_parsers(sub) -> None:
    from ..finetune.config import LoraConfig

    d = LoraConfig()
    p = sub.add_parser(
        "lora",
        help="end-to-end LoRA fine-tuning of MiniLM on a real task, every init, seeds paired",
        parents=[seed_parent(), output_parent("hrp-results/lora", "summary"), quiet_parent()],
    )
    for f in FLAGS:
        default = default_of(d, f.target)
        if f.dest in ("inits", "form"):
            default = ",".join(default)
        elif f.dest == "curve_steps":
            default = None
        f.add(p, default)
    p.add_argument(
        "--export-peft",
        default=None,
        metavar="DIR",
        help="also write seed 0's trained adapter of each init that keeps W0 as a PEFT LoRA "
        "adapter (DIR/INIT@lr=LR/adapter_model.safetensors + adapter_config.json + head)",
    )
    p.set_defaults(func=run_lora)
