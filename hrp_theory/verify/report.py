"""The verdicts of ``hrp-sim verify``: terminal table, Markdown report, JSON, figures.

Runs into the same folder accumulate: ``save`` keeps the rows of checks that an earlier run
wrote there and this run did not redo (each row names the run it comes from), and replaces the
rows of the checks it redid, so ``verify --checks aligned`` then ``verify --checks hmt`` leaves
both verdicts in ``report.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..results import new_run_id, provenance, write_json, write_png, write_text

#: How the terminal table marks what a prediction is.
MARK = {
    "expectation": "≈",
    "upper bound": "≤",
    "lower bound": "≥",
    "level": ">",
    "zero": "",
    "band": "±",
}


def _num(x) -> str:
    return "—" if x is None else f"{x:.6g}"


def _short(x) -> str:
    return "—" if x is None else f"{x:.3g}"


def verify_table(result: dict) -> str:
    """Terminal table: one row per verdict; the prediction column's mark says what it holds
    (≈ expected value, ≤ upper bound, ≥ lower bound, > level to exceed, ± band centre)."""
    head = (
        f"{'check':<52}{'prediction':>15}{'measured':>13}{'SE':>11}{'tol':>10}{'seeds':>8}  verdict"
    )
    lines = [head, "-" * len(head)]
    for c in result["checks"]:
        pred = f"{MARK.get(c.get('kind', 'expectation'), '')} {_num(c['prediction'])}".strip()
        seeds = f"{c['seeds']}" + (f"+{c['diverged']}d" if c.get("diverged") else "")
        lines.append(
            f"{c['name'][:51]:<52}{pred:>15}{_num(c['measured']):>13}"
            f"{_short(c['se']):>11}{_short(c['tolerance']):>10}{seeds:>8}  "
            f"{'pass' if c['passed'] else 'FAIL'}"
        )
    n_ok = sum(c["passed"] for c in result["checks"])
    lines.append(
        f"{n_ok}/{len(result['checks'])} rows pass"
        + (" (INTERRUPTED: partial catalogue)" if result["interrupted"] else "")
        + (
            "; '+Nd': N seeds diverged (left out; the row fails)"
            if any(c.get("diverged") for c in result["checks"])
            else ""
        )
    )
    return "\n".join(lines)


def _cell(x) -> str:
    """A Markdown table cell: pipes escaped, no line breaks."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def _prediction(c: dict) -> str:
    kind = c.get("kind", "expectation")
    if kind == "zero":
        return "0"
    return f"{_num(c['prediction'])} ({kind})"


def verify_markdown(result: dict, figures: dict) -> str:
    """The Markdown report: verdict, the runs it gathers, the full table, timings, figures."""
    n_ok = sum(c["passed"] for c in result["checks"])
    out = [
        "# hrp-theory: the theory's checks vs Monte Carlo",
        "",
        f"**Verdict: {'ALL PASS' if result['passed'] else 'FAILURES'}** — {n_ok}/"
        f"{len(result['checks'])} rows pass, float64.",
        "",
        "Values are R = ‖(M − BAᵀ)Σ^{1/2}‖² (twice the loss) unless the setting says loss. "
        "The prediction column says what it holds: an expected value, an upper or lower bound, "
        "a level the mean must exceed, 0 (a pathwise error or a count), or the centre of a "
        "relative band.",
        "",
        "| run | settings |",
        "|---|---|",
    ]
    for rid, run in result["runs"].items():
        st = run["settings"]
        out.append(
            f"| {rid[:8]} | {'quick' if st['quick'] else 'full'}, root seed {st['seed']}, "
            f"expectations within {st['n_se_expect']:g} SE, bounds within "
            f"{st['n_se_bound']:g} SE, pathwise at {st['pathwise_tol']:g}, "
            f"{st.get('basis', 'dense')} basis"
            + (" (INTERRUPTED)" if run.get("interrupted") else "")
            + " |"
        )
    out += [
        "",
        "| check | setting | prediction | measured | SE | tolerance | seeds | diverged | "
        "rule | run | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["checks"]:
        cells = [
            c["name"],
            c["setting"],
            _prediction(c),
            _num(c["measured"]),
            _num(c["se"]),
            _num(c["tolerance"]),
            c["seeds"],
            c.get("diverged", 0),
            c["rule"],
            c.get("run_id", "")[:8],
            "pass" if c["passed"] else "**FAIL**",
        ]
        out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    out += [
        "",
        "Wall time per check (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items()),
        "",
    ]
    for key, path in figures.items():
        out += [f"## {key}", "", f"![{key}]({Path(path).name})", ""]
    return "\n".join(out)


def _previous(path: Path, log=None) -> dict | None:
    """An earlier run's ``verify.json`` in the same folder, if it is whole; a damaged one is not
    merged (and ``log`` says so): this run's file replaces it."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = None
    ok = (
        isinstance(doc, dict)
        and isinstance(doc.get("checks"), list)
        and all(
            isinstance(c, dict)
            and isinstance(c.get("check"), str)
            and isinstance(c.get("run_id"), str)
            and isinstance(c.get("passed"), bool)
            for c in doc["checks"]
        )
        and all(isinstance(doc.get(k, {}), dict) for k in ("runs", "data", "timings_s"))
        and all(isinstance(v, dict) for v in doc.get("runs", {}).values())
    )
    if not ok and log is not None:
        log(f"verify: the earlier {path} is damaged; it is not merged and is replaced")
    return doc if ok else None


def merge(result: dict, previous: dict | None, run_id: str) -> dict:
    """This run's rows, plus the rows of an earlier run in the same folder for the checks this
    run did not redo."""
    rows = [dict(c, run_id=run_id) for c in result["checks"]]
    runs = {run_id: {"settings": result["settings"], "interrupted": result["interrupted"]}}
    data, timings = {}, {}
    if previous is not None:
        redone = set(result["timings_s"]) | {c["check"] for c in rows}
        kept = [c for c in previous["checks"] if c["check"] not in redone]
        rows = kept + rows
        for c in kept:
            runs.setdefault(
                c["run_id"],
                previous.get("runs", {}).get(
                    c["run_id"], {"settings": previous.get("settings", result["settings"])}
                ),
            )
        data = {k: v for k, v in previous.get("data", {}).items()}
        timings = {k: v for k, v in previous.get("timings_s", {}).items() if k not in redone}
    data.update(result["data"])
    timings.update(result["timings_s"])
    order = {name: i for i, name in enumerate(_catalogue())}
    rows.sort(key=lambda c: order.get(c["check"], len(order)))
    interrupted = result["interrupted"]
    return {
        "passed": bool(rows) and all(c["passed"] for c in rows) and not interrupted,
        "checks": rows,
        "data": data,
        "timings_s": timings,
        "runs": runs,
        "settings": result["settings"],
        "interrupted": interrupted,
        "run_id": run_id,
    }


def _catalogue():
    from .catalogue import CHECKS

    return CHECKS


def save(
    result: dict, out_dir, json_path=None, figures: bool = True, log=None
) -> tuple[dict, dict]:
    """Write ``verify.json``, ``report.md`` and the figures to ``out_dir`` (atomically), merged
    with an earlier run's verdicts there. Returns ``(merged result, paths)``."""
    from ..plotting import VERIFY_FIGURES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged = merge(result, _previous(out / "verify.json", log), new_run_id())
    figs = {}
    if figures:
        figs = {
            key: write_png(out / f"{key}.png", fn(merged["data"][key]))
            for key, fn in VERIFY_FIGURES.items()
            if key in merged["data"]
        }
    prov = provenance()
    paths = {"json": write_json(out / "verify.json", dict(merged, provenance=prov))}
    if json_path is not None:  # this run's verdicts alone
        paths["json_copy"] = write_json(
            json_path, dict(result, run_id=merged["run_id"], provenance=prov)
        )
    paths["report"] = write_text(out / "report.md", verify_markdown(merged, figs))
    paths.update({f"fig_{k}": v for k, v in figs.items()})
    return merged, {k: str(v) for k, v in paths.items()}
