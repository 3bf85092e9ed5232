"""``hrp-sim compare`` and ``hrp-sim demo``: inits compared on a synthetic problem.

The flags are a contract scripts rely on. Each one is declared once in ``FLAGS`` with the
config field it sets; its default is that field's dataclass default (``demo`` overrides a few).
"""

from __future__ import annotations

import argparse
import sys
import time

from ..bases import BASES
from ..config import ExperimentConfig, HrpSpec
from ..dynamics import OPTIMIZERS, TrainSpec
from ..factors import FORMS, SCALINGS, LoraSpec
from ..inits import INITS, RANDOM_INITS
from ..preheat import PREHEAT_FORMS
from ..problems import ProblemSpec
from ..validation import names
from ._shared import SEED, Flag, default_of, guarded, output_parent, quiet_parent, report_written


def preheat_steps(text: str):
    if text == "converged":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'converged'") from None


#: The experiment flags, by group; ``target`` is the ExperimentConfig field each one sets.
GROUPS: dict[str, list[Flag]] = {
    "problem": [
        Flag("--m", "problem.m", int, "output dimension (default %(default)s)"),
        Flag("--n", "problem.n", int, "input dimension (default %(default)s)"),
        Flag(
            "--spectrum",
            "problem.spectrum",
            str,
            "spectrum of ΔW: power:α, exp:τ, rank:k, spike:k[:h], flat, gap:k:g, "
            "values:v1,v2,… (default %(default)s)",
        ),
        Flag("--rank", "problem.rank", int, "number of nonzero singular values (default: all)"),
        Flag(
            "--scale",
            "problem.scale",
            float,
            "multiplies the spectrum, σ₁ = scale (default %(default)s)",
        ),
        Flag("--w0-spectrum", "problem.w0_spectrum", str, "spectrum of W0 (default %(default)s)"),
        Flag(
            "--w0-scale",
            "problem.w0_scale",
            float,
            "multiplies W0's spectrum (default %(default)s)",
        ),
        Flag(
            "--w0-align",
            "problem.w0_align",
            float,
            "alignment of W0's singular vectors with ΔW's, in [0, 1] (default %(default)s)",
        ),
        Flag(
            "--sigma",
            "problem.sigma",
            str,
            "input covariance: identity or "
            "power:β[:random|adversarial|aligned] (default %(default)s)",
        ),
        Flag(
            "--samples",
            "problem.n_samples",
            int,
            "finite-sample mode: number of training inputs N (default: population loss)",
        ),
        Flag(
            "--noise",
            "problem.noise",
            float,
            "label noise std, finite-sample mode (default %(default)s)",
        ),
    ],
    "LoRA and inits": [
        Flag("--r", "lora.r", int, "LoRA rank (default %(default)s)"),
        Flag("--lora", "lora.form", str, f"{'|'.join(FORMS)} (default %(default)s)"),
        Flag("--alpha", "lora.alpha", float, "LoRA α (default: the scale s = 1)"),
        Flag("--scaling", "lora.scaling", str, f"{'|'.join(SCALINGS)} (default %(default)s)"),
        Flag("--inits", "inits", str, f"comma list of {','.join(INITS)} (default %(default)s)"),
        Flag(
            "--base",
            "base",
            str,
            f"{'|'.join(RANDOM_INITS)}: random family of HRP's A_p and "
            "of the direction scale c (default %(default)s)",
        ),
        Flag("--init-std", "init_std", float, "Gaussian init std (default 1/sqrt(3n), Kaiming's)"),
    ],
    "HRP preheat": [
        Flag("--preheat-rank", "hrp.rank", int, "preheat rank p (default min(4r, min(m, n)))"),
        Flag(
            "--preheat-steps",
            "hrp.steps",
            preheat_steps,
            "T_p, or 'converged' (freeze-a preheat) (default %(default)s)",
        ),
        Flag(
            "--preheat",
            "hrp.form",
            str,
            f"preheat LoRA form, {'|'.join(PREHEAT_FORMS)} (default %(default)s)",
        ),
        Flag(
            "--preheat-optimizer",
            "hrp.optimizer",
            str,
            f"{'|'.join(OPTIMIZERS)} (default: the main optimizer)",
        ),
        Flag("--preheat-lr", "hrp.lr", float, "preheat learning rate (default: the main lr)"),
    ],
    "training": [
        Flag(
            "--optimizer", "train.optimizer", str, f"{'|'.join(OPTIMIZERS)} (default %(default)s)"
        ),
        Flag(
            "--lr",
            "train.lr",
            float,
            "learning rate (default 0.1 for gd/sgd, 1e-2 for "
            "adam/adamw, the RK4 step 0.02 for flow)",
        ),
        Flag("--momentum", "train.momentum", float, "sgd momentum (default %(default)s)"),
        Flag(
            "--weight-decay",
            "train.weight_decay",
            float,
            "adamw weight decay (default %(default)s)",
        ),
        Flag("--steps", "train.steps", int, "main-run steps (default %(default)s)"),
        Flag(
            "--record-every",
            "train.record_every",
            int,
            "record the losses every k steps (default: about 100 records)",
        ),
        Flag("--eps", "eps", float, "excess-loss level of time-to-ε (default %(default)s)"),
    ],
    "Monte Carlo": [
        Flag("--seeds", "seeds", int, "number of seeds (default %(default)s)"),
        SEED,
        Flag(
            "--chunk-size",
            "chunk_size",
            int,
            "seeds per jitted call (default: ≤ 64 per device, ≤ 1024 for a spectral or "
            "reduced basis at most 256 wide)",
        ),
        Flag(
            "--batch-size",
            "batch_size",
            int,
            "seeds vmapped together on a device (default on CPU 1, 64 for a spectral or "
            "reduced basis at most 256 wide; the device's share on a GPU)",
        ),
        Flag("--devices", "devices", int, "local devices to shard the seeds over (default: all)"),
        Flag(
            "--basis",
            "basis",
            str,
            f"{'|'.join(BASES)}: simulate in M's singular basis (spectral, O((m+n)r²) a "
            "step) or, for a rank-k target, in k + p coordinates whatever m and n (reduced); "
            "auto: the first that is exact (Σ = I, gaussian factors, gd/sgd/flow) "
            "(default %(default)s)",
        ),
    ],
}
EXPERIMENT_FLAGS = [f for group in GROUPS.values() for f in group]
#: Flags of the run, not of the experiment (not sweepable).
RUN_FLAGS = [
    Flag(
        "--cpu-devices",
        "",
        int,
        "split the CPU into N XLA devices (default: one per core; 1 for a single device)",
        metavar="N",
    ),
    Flag("--x64", "", action="store_true", help="float64 (default float32)"),
    Flag(
        "--stream",
        "",
        action="store_true",
        help="keep streaming moments, not per-seed arrays: bounded memory for any --seeds "
        "(no medians, quantiles or per_seed.npz)",
    ),
]
#: Per-run settings that are ExperimentConfig fields but do not change the experiment.
NOT_SWEPT = ("chunk_size", "batch_size", "devices")
DEMO = {
    "spectrum": "power:1",
    "inits": "kaiming,aligned,hrp",
    "preheat_rank": 16,
    "preheat_steps": 20,
    "lr": 0.1,
    "steps": 300,
    "seeds": 200,
}


def defaults() -> dict:
    """``{dest: default}`` of the experiment flags, read from the dataclasses."""
    cfg = ExperimentConfig()
    out = {f.dest: default_of(cfg, f.target) for f in EXPERIMENT_FLAGS}
    out["inits"] = ",".join(out["inits"])
    return out


def add_experiment_flags(p: argparse.ArgumentParser, overrides: dict | None = None) -> None:
    d = defaults() | (overrides or {})
    for title, flags in GROUPS.items():
        g = p.add_argument_group(title)
        for f in flags:
            f.add(g, d[f.dest])
    g = p.add_argument_group("run")
    for f in RUN_FLAGS:
        f.add(g)


def add_distributed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several hosts (jax.distributed; see hrp_theory/distributed.py)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run detected from Slurm / Open MPI / Cloud TPU",
    )
    g.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="process 0's address and a free port (with the next two flags)",
    )
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)


def config_from_args(a: argparse.Namespace) -> ExperimentConfig:
    """The ExperimentConfig of parsed flags (``ValueError`` on bad values)."""
    parts: dict[str, dict] = {"problem": {}, "lora": {}, "train": {}, "hrp": {}, "": {}}
    for f in EXPERIMENT_FLAGS:
        head, _, field = f.target.rpartition(".")
        parts[head][field] = getattr(a, f.dest)
    top = parts[""]
    top["inits"] = names(top["inits"], "inits")
    return ExperimentConfig(
        problem=ProblemSpec(**parts["problem"]),
        lora=LoraSpec(**parts["lora"]),
        train=TrainSpec(**parts["train"]),
        hrp=HrpSpec(**parts["hrp"]),
        **top,
    )


def ordering_verdict(summary: dict) -> str:
    """One line: is HRP's mean excess loss strictly between random and aligned, CIs apart?"""
    from ..stats import intervals_overlap

    e = summary["inits"]
    if not {"kaiming", "aligned", "hrp"} <= set(e):
        return "ordering check needs kaiming, aligned and hrp"
    k, a, h = (e[n]["excess_loss"] for n in ("kaiming", "aligned", "hrp"))
    ok = (
        a["mean"] < h["mean"] < k["mean"]
        and not intervals_overlap(a, h)
        and not intervals_overlap(h, k)
    )
    return (
        f"aligned < hrp < kaiming with non-overlapping 95% CIs: {'yes' if ok else 'NO'} "
        f"(excess {a['mean']:.3g} < {h['mean']:.3g} < {k['mean']:.3g})"
    )


def x64(a: argparse.Namespace) -> None:
    if a.x64:
        import jax

        jax.config.update("jax_enable_x64", True)


def run(a: argparse.Namespace) -> int:
    from .. import distributed, interrupts

    if (
        a.distributed
        or a.coordinator is not None
        or a.num_processes is not None
        or a.process_id is not None
    ):
        distributed.initialize(a.coordinator, a.num_processes, a.process_id)
    x64(a)
    config = config_from_args(a)

    def work() -> int:
        from ..experiment import run_experiment, seed_plan
        from ..report import save_experiment, table

        if a.verbose and distributed.is_primary():
            print(seed_plan(config))
        t0 = time.perf_counter()
        res = run_experiment(config, progress=not a.quiet, stream=a.stream)
        wall = time.perf_counter() - t0
        if not distributed.is_primary():
            return interrupts.exit_code() if res.interrupted else 0  # process 0 writes
        with interrupts.deferred() as d:
            summary = save_experiment(res, a.out, a.json, figures=not a.no_figures)
        print(table(summary))
        if a.command == "demo":
            print(ordering_verdict(summary))
        print(f"wall time {wall:.1f} s")
        code = report_written(summary["paths"], d["signal"])
        if res.interrupted:
            print(
                f"hrp-sim {a.command}: interrupted after {res.n_done} of {config.seeds} seeds; "
                "the files above hold those seeds",
                file=sys.stderr,
            )
            return interrupts.exit_code()
        return code

    return guarded(a, work, a.command, primary=distributed.is_primary())


def add_parsers(sub) -> None:
    for name, help_, over in (
        ("demo", "random vs aligned vs HRP on a built-in default", DEMO),
        ("compare", "compare inits on any synthetic problem", None),
    ):
        p = sub.add_parser(name, help=help_, parents=[output_parent("hrp-results"), quiet_parent()])
        add_experiment_flags(p, over)
        add_distributed_flags(p)
        p.add_argument(
            "--verbose",
            action="store_true",
            help="print how the seeds are laid out (devices, chunks, vmapped batches, layout)",
        )
        p.set_defaults(func=run)
