"""``hrp-sim sweep``: ``compare`` once per value of any experiment flag (resumable)."""

from __future__ import annotations

import argparse
import sys
import time

from ._shared import explicit, guarded, output_parent, quiet_parent
from .compare import EXPERIMENT_FLAGS, NOT_SWEPT, add_experiment_flags, config_from_args, x64

SWEEPABLE = [f for f in EXPERIMENT_FLAGS if f.dest not in NOT_SWEPT]


def run(a: argparse.Namespace) -> int:
    from .. import interrupts
    from ..sweep import parse_vary, run_sweep, table

    vary = parse_vary(a.vary, SWEEPABLE, explicit(a.argv, EXPERIMENT_FLAGS))
    x64(a)

    def work() -> int:
        t0 = time.perf_counter()
        res = run_sweep(
            vary,
            a,
            config_from_args,
            a.out,
            progress=not a.quiet,
            log=(lambda *x: None) if a.quiet else print,
            json_path=a.json,
            figures=not a.no_figures,
        )
        if res["rows"]:
            print(table(res["rows"], vary))
        print(
            f"{res['done']}/{res['total']} points done in {time.perf_counter() - t0:.1f} s"
            + (" (INTERRUPTED: rerun the same command to resume)" if res["interrupted"] else "")
        )
        for k, v in res["paths"].items():
            print(f"{k:>16}: {v}")
        if res["interrupted"] or interrupts.received() is not None:
            print(
                "hrp-sim sweep: interrupted; the points above are saved, the rest run when the "
                "same command is run again",
                file=sys.stderr,
            )
            return interrupts.exit_code()
        return 0

    return guarded(a, work, "sweep")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="compare over a list of values of any compare flag",
        parents=[output_parent("hrp-results/sweep", "sweep table"), quiet_parent()],
    )
    add_experiment_flags(p)
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="FLAG=V1,V2,…",
        help="an experiment flag and its values (';' separates values that contain "
        "commas); several --vary are zipped",
    )
    p.set_defaults(func=run)
