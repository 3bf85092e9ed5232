"""Reproduce the figures of `hrp-sim verify`, one command each, with the checks behind them.

    python simulations/theory_figures.py [FIGURE ...] [--smoke] [--out DIR]

FIGURE is any of theorem_c (E R_HRP vs p between Theorem C's bounds, four spectra), transient
(random freeze-A learning curve vs its exact expectation), gap and regimes (classic preheat:
finite-budget gap, and HRP quality vs T_p across the three regimes), anisotropic (the Σ ordering);
default all. Writes DIR/<figure>.png, DIR/verify.json and DIR/report.md (default
./hrp-results/theory-figures). --smoke runs the checks at CI size.
"""

import argparse
import sys

from hrp_theory import cli

CHECK_OF = {
    "theorem_c": "theorem-c",
    "transient": "transient",
    "gap": "preheat-regimes",
    "regimes": "preheat-regimes",
    "anisotropic": "anisotropic",
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("figures", nargs="*", metavar="FIGURE", help=", ".join(CHECK_OF))
    p.add_argument("--smoke", action="store_true", help="CI size (the checks' --quick)")
    p.add_argument("--out", default="hrp-results/theory-figures")
    a = p.parse_args(argv)
    bad = [f for f in a.figures if f not in CHECK_OF]
    if bad:
        p.error(f"unknown figure {', '.join(bad)}; choose from {', '.join(CHECK_OF)}")
    checks = dict.fromkeys(CHECK_OF[f] for f in (a.figures or CHECK_OF))
    return cli.main(
        [
            "verify",
            "--checks",
            ",".join(checks),
            "--out",
            a.out,
            "--quiet",
            *(["--quick"] if a.smoke else []),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
