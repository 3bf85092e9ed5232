"""``hrp-sim sweep``: one ``compare`` run per value of one or more flags, resumable.

``--vary FLAG=V1,V2,…`` names any ``compare`` flag (without the dashes) and its values; several
``--vary`` are zipped, so their lists must have the same length (``--vary r=2,4,8 --vary
preheat-rank=8,16,32``). Every point's config is built and validated before anything runs.

Each finished point is written atomically to ``DIR/points/point-NNN.json`` with its config; a rerun
with the same flags skips the points already there, so an interrupted sweep keeps what it finished
and picks up where it stopped. The table (``sweep.csv``, ``sweep.json``) and the figure
(``sweep.png``: excess loss vs the first varied flag, one line per init, 95 % CIs) cover the points
done so far.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
from pathlib import Path


from .results import jsonable, provenance, write_json, write_text

#: Flags that shape the output rather than the experiment: not sweepable.
NOT_SWEPT = ("out", "json", "quiet", "no_figures", "vary", "command", "x64", "cpu_devices")


def parse_vary(items, parser: argparse.ArgumentParser, argv) -> list[tuple[str, list]]:
    """``[(dest, [typed values])]`` from ``--vary FLAG=V1,V2`` items; ``ValueError`` if the lists
    are inconsistent (unknown flag, empty or repeated values, unequal lengths, flag also fixed)."""
    if not items:
        raise ValueError("vary: nothing to sweep; add --vary FLAG=V1,V2,… (e.g. "
                         "--vary preheat-rank=4,8,16)")
    actions = {a.dest: a for a in parser._actions}
    out, seen = [], set()
    for item in items:
        flag, eq, text = item.partition("=")
        flag = flag.strip().lstrip("-")
        dest = flag.replace("-", "_")
        if not eq or not text.strip():
            raise ValueError(f"vary: {item!r} has no values; write FLAG=V1,V2,…")
        if dest not in actions or dest in NOT_SWEPT or actions[dest].option_strings == []:
            raise ValueError(f"vary: {flag!r} is not a sweepable compare flag; use one of "
                             + ", ".join(a.option_strings[0].lstrip("-") for a in parser._actions
                                         if a.option_strings and a.dest not in NOT_SWEPT
                                         and a.dest != "help"))
        if dest in seen:
            raise ValueError(f"vary: {flag!r} is varied twice; give one list per flag")
        if any(a == f"--{flag}" or a.startswith(f"--{flag}=") for a in argv):
            raise ValueError(f"vary: --{flag} is also given as a fixed flag; drop one of them")
        seen.add(dest)
        raw = [v.strip() for v in text.split(",")]
        if any(not v for v in raw):
            raise ValueError(f"vary: empty value in {item!r}")
        if len(set(raw)) != len(raw):
            raise ValueError(f"vary: {flag!r} lists a value twice; each point must differ")
        conv = actions[dest].type or str
        try:
            values = [conv(v) for v in raw]
        except (ValueError, argparse.ArgumentTypeError) as e:
            raise ValueError(f"vary: bad value for {flag!r}: {e}") from None
        out.append((dest, values))
    lengths = {len(v) for _, v in out}
    if len(lengths) > 1:
        raise ValueError("vary: the lists have different lengths (" + ", ".join(
            f"{d.replace('_', '-')}: {len(v)}" for d, v in out) + "); zipped lists must match")
    return out


def points(base: argparse.Namespace, vary) -> list[tuple[dict, argparse.Namespace]]:
    """``[(varied values, namespace)]`` for each point."""
    result = []
    for i in range(len(vary[0][1])):
        ns = copy.copy(base)
        values = {}
        for dest, vals in vary:
            setattr(ns, dest, vals[i])
            values[dest.replace("_", "-")] = vals[i]
        result.append((values, ns))
    return result


def _row(point: int, values: dict, name: str, e: dict) -> dict:
    ex, fl = e["excess_loss"], e["final_loss"]
    row = {"point": point, **values, "init": name, "final_loss": fl["mean"],
           "final_loss_se": fl["se"], "excess_loss": ex["mean"], "excess_loss_se": ex["se"],
           "excess_ci_lo": ex["ci95"][0], "excess_ci_hi": ex["ci95"][1],
           "excess_median": ex["median"],
           "captured_energy_init": e["captured_energy_init"]["mean"], "n": ex["n"],
           "n_diverged": e["n_diverged"]}
    if "same_total_budget" in e:
        row["excess_same_total"] = e["same_total_budget"]["excess_loss"]["mean"]
    return row


def run_sweep(vary, base: argparse.Namespace, config_from_args, out_dir, progress=True,
              log=print) -> dict:
    """Run (or resume) the sweep; returns ``{"rows", "done", "total", "interrupted", "paths"}``."""
    from .montecarlo import run_experiment
    from .report import summarize_experiment

    pts = points(base, vary)
    configs = []
    for values, ns in pts:  # validate every point before running any
        try:
            configs.append(config_from_args(ns))
        except ValueError as e:
            raise ValueError(f"point {values}: {e}") from None
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    rows, done, interrupted = [], 0, False
    for i, ((values, _), cfg) in enumerate(zip(pts, configs)):
        path = out / "points" / f"point-{i:03d}.json"
        stored = json.loads(path.read_text()) if path.exists() else None
        if stored is not None and stored["config"] == jsonable(cfg):
            summary = stored["summary"]
            log(f"point {i + 1}/{len(pts)} {values}: kept from {path}")
        else:
            log(f"point {i + 1}/{len(pts)} {values}")
            try:
                res = run_experiment(cfg, progress=progress)
            except KeyboardInterrupt:
                interrupted = True
                break
            if res.interrupted:
                interrupted = True
                break
            summary = jsonable(summarize_experiment(res))
            write_json(path, {"vary": values, "config": cfg, "summary": summary})
        rows += [_row(i, values, name, e) for name, e in summary["inits"].items()]
        done += 1
    paths = write_table(rows, vary, out)
    return {"rows": rows, "done": done, "total": len(pts), "interrupted": interrupted,
            "paths": paths}


def write_table(rows: list, vary, out: Path) -> dict:
    """``sweep.csv``, ``sweep.json`` and ``sweep.png`` for the rows done so far."""
    prov = provenance()
    paths = {"json": write_json(out / "sweep.json", {
        "vary": {d.replace("_", "-"): v for d, v in vary}, "rows": rows, "provenance": prov})}
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
        paths["csv"] = write_text(out / "sweep.csv", buf.getvalue())
        from .plotting import save_png, sweep_figure

        paths["figure"] = save_png(sweep_figure(rows, vary[0][0].replace("_", "-"),
                                                prov["dtype"]), out / "sweep.png")
    return {k: str(v) for k, v in paths.items()}

