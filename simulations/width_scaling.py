"""Claim: the (1 − r/n) law and Theorem C's bounds hold at any width, up to n = 10⁵, and HRP's
gain over random fades at fixed p but not at fixed p/n.

    python simulations/width_scaling.py [--smoke] [--seeds S] [--out DIR]

A rank-8 target (power spectrum), r = 4, A frozen: the random Gaussian init's endpoint and HRP's
(converged freeze-A preheat of rank p) against the theory (docs/theory.md §3.2, §5.2), for
m = n from 64 to 10⁵, at a fixed p = 16 and at a fixed p/n = 1/4. Every simulated seed runs in
the reduced basis (docs/theory.md §2.1): k + p coordinates whatever n, where one dense seed at
n = 10⁵ would need 80 GB. At a fixed p/n a seed's cost grows with p (a QR of (k + p) × p), so
the simulator stops at n = 1024 (``--sim-max-n``) and the wider points come from the exact
width-free law of R_HRP (``theory.hrp_residual_draws``: Wishart corners, O(k³) a draw); at every
simulated point the two are compared (a z-score, printed and saved), so the law is checked where
both exist. The third panel is HRP's gain over random against Theorem C's guaranteed gain.
Writes DIR/width_scaling.json and .png (default ./hrp-results/width-scaling).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import hrp_theory as H
from hrp_theory import theory
from hrp_theory.bases import resolve_basis
from hrp_theory.results import provenance, write_json, write_png

R, K = 4, 8
WIDTHS = [64, 256, 1024, 4096, 16384, 65536, 100_000]


def law(n: int, p: int, draws: int) -> dict:
    """Mean and SE of R_random and R_HRP(p) from the exact law (independent draws, not paired)."""
    sigma = H.spectrum_values("power:1", K)
    rand = theory.hrp_residual_draws(sigma, n, R, R, draws, seed=1)
    hrp = theory.hrp_residual_draws(sigma, n, R, p, draws, seed=2)
    gain = H.summarize(rand - hrp)  # the mean is right; the SE of unpaired draws is not
    gain["se"] = float(np.hypot(rand.std(ddof=1), hrp.std(ddof=1)) / np.sqrt(draws))
    return {"random": H.summarize(rand), "hrp": H.summarize(hrp), "gain": gain, "draws": draws}


def theory_row(n: int, p: int) -> dict:
    sigma = np.r_[H.spectrum_values("power:1", K), np.zeros(n - K)]
    lo, hi = theory.theorem_c_bounds(sigma, n, R, p)
    return {
        "random": theory.freeze_a_mean(sigma, n, R),
        "hrp_lower": lo,
        "hrp_upper": hi,
        "gain_guaranteed": theory.theorem_c_gain(sigma, n, R, p),
    }


def z_scores(sim: dict, exact: dict) -> dict:
    return {
        name: (sim[name]["mean"] - exact[name]["mean"])
        / np.hypot(sim[name]["se"], exact[name]["se"])
        for name in ("random", "hrp")
    }


def point(n: int, p: int, seeds: int) -> dict:
    cfg = H.ExperimentConfig(
        problem=H.ProblemSpec(m=n, n=n, spectrum="power:1", rank=K),
        lora=H.LoraSpec(r=R, form="freeze-a"),
        train=H.TrainSpec(lr=1.5, steps=300, record_every=300),
        hrp=H.HrpSpec(rank=p, steps="converged", form="freeze-a"),
        inits=("gaussian", "hrp"),
        base="gaussian",
        seeds=seeds,
    )
    assert resolve_basis(cfg).kind == "reduced"
    t0 = time.perf_counter()
    res = H.run_experiment(cfg, progress=False)
    wall = time.perf_counter() - t0
    rand = 2 * res.per_seed["gaussian"]["final_loss"]
    hrp = 2 * res.per_seed["hrp"]["final_loss"]
    sim = {"random": H.summarize(rand), "hrp": H.summarize(hrp), "gain": H.summarize(rand - hrp)}
    exact = law(n, p, seeds)
    return {
        "n": n,
        "p": p,
        "source": "simulator",
        "seeds": seeds,
        "wall_s": wall,
        **sim,
        "law": exact,
        "z_vs_law": z_scores(sim, exact),
        "theory": theory_row(n, p),
    }


def law_point(n: int, p: int, draws: int) -> dict:
    t0 = time.perf_counter()
    exact = law(n, p, draws)
    wall = time.perf_counter() - t0
    return {
        "n": n,
        "p": p,
        "source": "law",
        "seeds": draws,
        "wall_s": wall,
        **exact,
        "theory": theory_row(n, p),
    }


def figure(rows: dict):
    from hrp_theory.plotting import COLORS, _subplots

    fig, axes = _subplots(1, 3, figsize=(15, 4.6))
    colors = {"random": COLORS["gaussian"], "hrp": COLORS["hrp"]}
    names = {"random": "random (gaussian A)", "hrp": "hrp"}
    for ax, (label, pts) in zip(axes, rows.items()):
        n = np.array([q["n"] for q in pts], float)
        th = {k: np.array([q["theory"][k] for q in pts]) for k in pts[0]["theory"]}
        for source, fmt, fill in (("simulator", "o", None), ("law", "s", "none")):
            sel = [i for i, q in enumerate(pts) if q["source"] == source]
            if not sel:
                continue
            for name in ("random", "hrp"):
                ax.errorbar(
                    n[sel],
                    [pts[i][name]["mean"] for i in sel],
                    yerr=[1.96 * pts[i][name]["se"] for i in sel],
                    fmt=fmt,
                    ms=4,
                    mfc=fill,
                    color=colors[name],
                    label=f"{names[name]}: {source} mean, 95% CI",
                )
        ax.plot(
            n, th["random"], color=COLORS["gaussian"], lw=1, ls=":", label=r"theory: $(1 - r/n)F$"
        )
        ax.plot(n, th["hrp_upper"], color="tab:blue", lw=1, label="Theorem C upper bound")
        ax.plot(n, th["hrp_lower"], color="tab:blue", lw=1, ls="--", label="Theorem C lower bound")
        ax.set_xscale("log")
        ax.set_xlabel("width $m = n$")
        ax.set_ylabel(r"$R_\infty = \|M(I - P_A)\|_F^2$ (A frozen)")
        ax.set_title(f"{label}: {pts[0]['seeds']:,} seeds (or law draws) a point", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5)
    ax = axes[2]
    for (label, pts), color in zip(rows.items(), ("tab:purple", "tab:orange")):
        n = np.array([q["n"] for q in pts], float)
        for source, fmt, fill in (("simulator", "o", None), ("law", "s", "none")):
            sel = [q for q in pts if q["source"] == source]
            if sel:
                ax.errorbar(
                    [q["n"] for q in sel],
                    [q["gain"]["mean"] for q in sel],
                    yerr=[1.96 * q["gain"]["se"] for q in sel],
                    fmt=fmt,
                    ms=4,
                    mfc=fill,
                    color=color,
                    label=f"{label}: gain from the {source}, 95% CI",
                )
        ax.plot(
            n,
            [q["theory"]["gain_guaranteed"] for q in pts],
            color=color,
            lw=1,
            ls="--",
            label=f"{label}: Theorem C guaranteed gain",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width $m = n$")
    ax.set_ylabel(r"gain $R_{\mathrm{random}} - R_{\mathrm{HRP}}$")
    ax.set_title("HRP's gain over random: fades at fixed p, stays at fixed p/n", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5)
    fig.suptitle(
        f"Width scaling: rank-{K} power target, r = {R}, converged freeze-A preheat "
        "(filled: simulated in the reduced basis; open squares: exact law)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny run: two widths, 64 seeds")
    p.add_argument("--seeds", type=int, default=10_000, help="seeds (and law draws) a point")
    p.add_argument(
        "--sim-max-n", type=int, default=1024, help="widest fixed-p/n point that is simulated"
    )
    p.add_argument("--out", default="hrp-results/width-scaling")
    a = p.parse_args(argv)
    H.configure()
    seeds = 64 if a.smoke else a.seeds
    widths = [64, 100_000] if a.smoke else WIDTHS
    rows = {"fixed p = 16": [], "fixed p/n = 1/4": []}
    for n in widths:
        rows["fixed p = 16"].append(point(n, 16, seeds))
        if n <= (64 if a.smoke else a.sim_max_n):
            rows["fixed p/n = 1/4"].append(point(n, n // 4, seeds))
        else:
            rows["fixed p/n = 1/4"].append(law_point(n, n // 4, seeds))
        for label, pts in rows.items():
            if pts and pts[-1]["n"] == n:
                q = pts[-1]
                h, lo, hi = q["hrp"], q["theory"]["hrp_lower"], q["theory"]["hrp_upper"]
                inside = lo - 3 * h["se"] <= h["mean"] <= hi + 3 * h["se"]
                print(
                    f"{label:>16}  n = {n:>6}: random {q['random']['mean']:.5f} ± "
                    f"{q['random']['se']:.5f} (theory {q['theory']['random']:.5f}), hrp "
                    f"{h['mean']:.5f} ± {h['se']:.5f} vs Theorem C's [{lo:.5f}, {hi:.5f}]: "
                    f"{'inside' if inside else 'OUTSIDE'} within 3 SE, "
                    f"{q['wall_s']:.1f} s, {q['source']}"
                    + (
                        " (z vs law: random {random:+.2f}, hrp {hrp:+.2f})".format(**q["z_vs_law"])
                        if "z_vs_law" in q
                        else ""
                    ),
                    flush=True,
                )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "width_scaling.json", {"r": R, "k": K, "rows": rows, "provenance": provenance()}
    )
    write_png(out / "width_scaling.png", figure(rows))
    print(f"wrote {out / 'width_scaling.png'} and {out / 'width_scaling.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
