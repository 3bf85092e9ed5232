"""``hrp-sim verify``: the theory's closed forms and bounds vs Monte Carlo, with verdicts."""

from __future__ import annotations

import argparse
import sys
import time

from ._shared import Flag, guarded, output_parent, quiet_parent, seed_parent

#: Flags that set ``verify.Settings`` fields (defaults read from the dataclass when parsing).
SETTINGS = [
    Flag(
        "--n-se-expect",
        "n_se_expect",
        float,
        "expectation rule: |mean − prediction| ≤ K·SE (default %(default)s)",
    ),
    Flag(
        "--n-se-bound", "n_se_bound", float, "bound rule: mean ≤ bound + K·SE (default %(default)s)"
    ),
    Flag(
        "--pathwise-tol",
        "pathwise_tol",
        float,
        "relative tolerance of pathwise identities (default %(default)s)",
    ),
]


def run(a: argparse.Namespace) -> int:
    import jax

    from .. import interrupts, verify
    from ..validation import names
    from ..verify.report import save, verify_table

    if a.list:
        for name in verify.CHECKS:
            doc = (verify.check_function(name).__doc__ or "").strip().splitlines()
            print(f"{name:<20}{doc[0] if doc else ''}")
        return 0
    checks = verify.check_names(None if a.checks is None else names(a.checks, "checks"))
    settings = verify.Settings(
        quick=a.quick,
        seed=a.seed,
        progress=not a.quiet,
        basis=a.basis,
        **{f.dest: getattr(a, f.dest) for f in SETTINGS},
    )

    def work() -> int:
        jax.config.update("jax_enable_x64", True)  # the checks are stated in float64
        t0 = time.perf_counter()
        result = verify.run_checks(checks, settings)
        wall = time.perf_counter() - t0
        with interrupts.deferred() as d:
            merged, paths = save(
                result,
                a.out,
                a.json,
                figures=not a.no_figures,
                log=lambda t: print(t, file=sys.stderr),
            )
        print(verify_table(result))
        print(
            f"verdict: {'PASS' if result['passed'] else 'FAIL'}; wall time {wall:.1f} s"
            + (
                f"; {a.out}/report.md holds {len(merged['checks'])} rows of "
                f"{len(merged['runs'])} runs"
                if len(merged["runs"]) > 1
                else ""
            )
        )
        code = 0 if result["passed"] else 1
        from ._shared import report_written

        code = report_written(paths, d["signal"]) or code
        if result["interrupted"]:
            print(
                "hrp-sim verify: interrupted; the checks above finished and are saved",
                file=sys.stderr,
            )
            return interrupts.exit_code()
        return code

    return guarded(a, work, "verify")


def add_parsers(sub) -> None:
    from ..verify._rules import BASES, Settings

    d = Settings()
    p = sub.add_parser(
        "verify",
        help="the theory's checks vs Monte Carlo (float64)",
        parents=[seed_parent(), output_parent("hrp-results/verify", "verdict"), quiet_parent()],
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer seeds and settings (about a minute on 2 cores, 18 s once compiled)",
    )
    p.add_argument(
        "--checks",
        default=None,
        help="comma list of checks to run (default all; --list shows them)",
    )
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument(
        "--basis",
        choices=BASES,
        default=d.basis,
        help="auto (default): each check's whitened problems in the fastest exact basis "
        "(spectral or reduced); dense: every check on dense rotated problems, the general path",
    )
    g = p.add_argument_group("verdict rules")
    for f in SETTINGS:
        f.add(g, getattr(d, f.target))
    p.set_defaults(func=run)
