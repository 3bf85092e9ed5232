"""Claim: at a fixed budget, classic LoRA from a random init is far from the best rank-r result,
the oracle-aligned init reaches it, and HRP lands in between (paired seeds, 95 % CIs).

    python simulations/finite_budget_gap.py [--smoke] [--out DIR]

Writes DIR/summary.json, DIR/curves.png and DIR/distribution.png (default ./hrp-results/gap).
"""

import argparse
import sys

from hrp_theory import cli


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny run for CI")
    p.add_argument("--out", default="hrp-results/gap")
    a = p.parse_args(argv)
    size = ["--seeds", "8", "--steps", "40"] if a.smoke else ["--seeds", "400", "--steps", "300"]
    return cli.main(
        [
            "compare",
            "--m",
            "64",
            "--n",
            "64",
            "--r",
            "4",
            "--spectrum",
            "power:1",
            "--lora",
            "classic",
            "--inits",
            "kaiming,aligned,hrp",
            "--preheat-rank",
            "16",
            "--preheat-steps",
            "20",
            "--optimizer",
            "gd",
            "--lr",
            "0.1",
            *size,
            "--out",
            a.out,
            "--quiet",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
