"""``hrp-sim sweep``: one ``compare`` run per value of one or more flags, resumable.

``--vary FLAG=V1,V2,…`` names any experiment flag of ``compare`` (with or without the dashes,
``-`` or ``_``) and its values; values that contain commas (``values:`` spectra) are separated by
``;`` instead (``--vary "spectrum=values:1,0.5;values:1,0.1"``). Several ``--vary`` are zipped,
so their lists must have the same length (``--vary r=2,4,8 --vary preheat-rank=8,16,32``). A
flag cannot be both varied and fixed. Every point's config is built and validated before
anything runs: its values, its precision and its memory (``experiment.preflight``).

With ``--stream`` every point keeps streaming moments instead of per-seed arrays (bounded
memory; no medians). Each finished point is written atomically to ``DIR/points/point-NNN.json``
with its full config and precision; a rerun reuses a stored point only when both match exactly
(so a sweep resumed with other flags, or with ``--x64``, recomputes what changed) and picks up
where it stopped. The table (``sweep.csv``, ``sweep.json``, and printed) and the figure
(``sweep.png``: excess loss vs the first varied flag, one line per init, 95 % CIs, the fixed
configuration in the title) cover the points done so far.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
from pathlib import Path

from . import interrupts
from .results import jsonable, provenance, write_json, write_png, write_text
from .runtime import x64


def _values(text: str) -> list[str]:
    return [v.strip() for v in (text.split(";") if ";" in text else text.split(","))]


def parse_vary(items, flags, fixed: set[str]) -> list[tuple[str, list]]:
    """``[(dest, [typed values])]`` from ``--vary FLAG=V1,V2`` items.

    Args:
      items: the ``--vary`` strings.
      flags: the sweepable ``cli._shared.Flag``s (their ``type`` converts the values).
      fixed: the dests given as fixed flags on the command line.

    ``ValueError`` if the lists are inconsistent (unknown or unsweepable flag, empty or repeated
    values, unequal lengths, a flag also fixed).
    """
    if not items:
        raise ValueError(
            "vary: nothing to sweep; add --vary FLAG=V1,V2,… (e.g. --vary preheat-rank=4,8,16)"
        )
    by_dest = {f.dest: f for f in flags}
    out, seen = [], set()
    for item in items:
        flag, eq, text = item.partition("=")
        flag = flag.strip().lstrip("-")
        dest = flag.replace("-", "_")
        if not eq or not text.strip():
            raise ValueError(f"vary: {item!r} has no values; write FLAG=V1,V2,…")
        if dest not in by_dest:
            raise ValueError(
                f"vary: {flag!r} is not a sweepable compare flag; use one of "
                + ", ".join(f.name.lstrip("-") for f in flags)
            )
        name = by_dest[dest].name
        if dest in seen:
            raise ValueError(f"vary: {name} is varied twice; give one list per flag")
        if dest in fixed:
            raise ValueError(f"vary: {name} is also given as a fixed flag; drop one of them")
        seen.add(dest)
        raw = _values(text)
        if any(not v for v in raw):
            raise ValueError(f"vary: empty value in {item!r}")
        if len(set(raw)) != len(raw):
            raise ValueError(f"vary: {name} lists a value twice; each point must differ")
        conv = by_dest[dest].type or str
        try:
            values = [conv(v) for v in raw]
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise ValueError(f"vary: bad value for {name}: {e}") from None
        out.append((dest, values))
    lengths = {len(v) for _, v in out}
    if len(lengths) > 1:
        raise ValueError(
            "vary: the lists have different lengths ("
            + ", ".join(f"{by_dest[d].name}: {len(v)}" for d, v in out)
            + "); zipped lists must match"
        )
    return out


def points(base, vary) -> list[tuple[dict, object]]:
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
    row = {
        "point": point,
        **values,
        "init": name,
        "final_loss": fl["mean"],
        "final_loss_se": fl["se"],
        "excess_loss": ex["mean"],
        "excess_loss_se": ex["se"],
        "excess_ci_lo": ex["ci95"][0],
        "excess_ci_hi": ex["ci95"][1],
        "excess_median": ex["median"],
        "captured_energy_init": e["captured_energy_init"]["mean"],
        "n": ex["n"],
        "n_diverged": e["n_diverged"],
    }
    if "same_total_budget" in e:
        row["excess_same_total"] = e["same_total_budget"]["excess_loss"]["mean"]
    return row


def _stored(path: Path, config, dtype: str):
    """The summary stored for this point, if its config and precision match exactly."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("config") == jsonable(config) and doc.get("dtype") == dtype:
        return doc.get("summary")
    return None


def run_sweep(
    vary,
    base,
    config_from_args,
    out_dir,
    progress=True,
    log=print,
    json_path=None,
    figures: bool = True,
) -> dict:
    """Run (or resume) the sweep; returns ``{"rows", "done", "total", "interrupted", "paths"}``."""
    from .experiment import preflight, run_experiment
    from .report import summarize_experiment

    stream = bool(getattr(base, "stream", False))
    pts = points(base, vary)
    configs = []
    for values, ns in pts:  # validate every point (values, precision, memory) before any runs
        try:
            configs.append(config_from_args(ns))
            preflight(configs[-1], stream)
        except ValueError as e:
            raise ValueError(f"point {values}: {e}") from None
    dtype = "float64" if x64() else "float32"
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    rows, done, interrupted, d = [], 0, False, {"signal": None}
    for i, ((values, _), cfg) in enumerate(zip(pts, configs)):
        path = out / "points" / f"point-{i:03d}.json"
        stored = _stored(path, cfg, dtype)
        if stored is not None:
            summary = stored
            log(f"point {i + 1}/{len(pts)} {values}: kept from {path}")
        else:
            log(f"point {i + 1}/{len(pts)} {values}")
            try:
                res = run_experiment(cfg, progress=progress, stream=stream)
            except KeyboardInterrupt:
                interrupted = True
                break
            if res.interrupted:
                interrupted = True
                break
            summary: dict = jsonable(summarize_experiment(res))
            with interrupts.deferred() as d:
                write_json(
                    path, {"vary": values, "config": cfg, "dtype": dtype, "summary": summary}
                )
        rows += [_row(i, values, name, e) for name, e in summary["inits"].items()]
        done += 1
        if d["signal"] is not None:  # a signal came while the point was written: stop here
            interrupted = True
            break
    with interrupts.deferred() as d:
        paths = write_table(rows, vary, out, configs[0], dtype, json_path, figures)
    return {
        "rows": rows,
        "done": done,
        "total": len(pts),
        "interrupted": interrupted or d["signal"] is not None,
        "paths": paths,
    }


def fixed_settings(config, vary) -> str:
    """The sweep's fixed configuration in a few words, for the figure's title."""
    varied = {d for d, _ in vary}
    c, p = config, config.problem
    items = [
        ("m", p.m),
        ("n", p.n),
        ("r", c.lora.r),
        ("spectrum", p.spectrum),
        ("sigma", p.sigma),
        ("lora", c.lora.form),
        ("optimizer", c.train.optimizer),
        ("lr", c.train.learning_rate),
        ("steps", c.train.steps),
        ("preheat_rank", c.preheat_rank if c.preheats else None),
        ("preheat_steps", c.hrp.steps if c.preheats else None),
        ("seeds", c.seeds),
    ]
    return ", ".join(
        f"{k.replace('_', '-')}={v:g}" if isinstance(v, float) else f"{k.replace('_', '-')}={v}"
        for k, v in items
        if v is not None and k not in varied
    )


def write_table(
    rows: list, vary, out: Path, config, dtype: str, json_path=None, figures: bool = True
) -> dict:
    """``sweep.csv``, ``sweep.json`` (and ``json_path``) and ``sweep.png`` for the rows done."""
    doc = {
        "vary": {d.replace("_", "-"): v for d, v in vary},
        "rows": rows,
        "fixed": fixed_settings(config, vary),
        "dtype": dtype,
        "provenance": provenance(),
    }
    paths = {"json": write_json(out / "sweep.json", doc)}
    if json_path is not None:
        paths["json_copy"] = write_json(json_path, doc)
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
        paths["csv"] = write_text(out / "sweep.csv", buf.getvalue())
        if figures:
            from .plotting import sweep_figure

            paths["figure"] = write_png(
                out / "sweep.png",
                sweep_figure(rows, vary[0][0].replace("_", "-"), dtype, doc["fixed"]),
            )
    return {k: str(v) for k, v in paths.items()}


def table(rows: list, vary) -> str:
    """The sweep's results in the terminal: one line per (point, init), the excess loss with its
    95 % CI, diverged seeds, and the varied values."""
    names = [d.replace("_", "-") for d, _ in vary]
    head = (
        "".join(f"{n:>14}" for n in names) + f"  {'init':<14}{'excess loss (95% CI)':>36}{'n':>7}"
    )
    head += f"{'diverged':>10}"
    lines = [head, "-" * len(head)]
    fmt = lambda v: "nan" if v is None or v != v else f"{v:.4g}"
    for r in rows:
        vals = "".join(f"{str(r[n]):>14}" for n in names)
        if r["n"] == 0:
            ci = f"all {r['n_diverged']} diverged"
        else:
            ci = f"{fmt(r['excess_loss'])} [{fmt(r['excess_ci_lo'])}, {fmt(r['excess_ci_hi'])}]"
        lines.append(f"{vals}  {r['init']:<14}{ci:>36}{r['n']:>7}{r['n_diverged']:>10}")
    return "\n".join(lines)
