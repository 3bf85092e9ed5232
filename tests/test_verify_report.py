"""verify's report.md renders as a table (pipes escaped), says what each prediction is, and
keeps the verdicts of earlier runs into the same folder."""

import json

import pytest

from hrp_theory import cli
from hrp_theory.verify.report import verify_markdown

markdown_it = pytest.importorskip("markdown_it")


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the verdict table (the one with a 'verdict' header), rendered by a real
    Markdown parser."""
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(markdown)
    tables, row, cell, in_cell = [], None, [], False
    for t in tokens:
        if t.type == "table_open":
            tables.append([])
        elif t.type == "tr_open":
            row = []
        elif t.type in ("th_open", "td_open"):
            cell, in_cell = [], True
        elif t.type == "inline" and in_cell:  # the rendered text (escapes and emphasis resolved)
            cell.append(
                "".join(c.content for c in t.children or [] if c.type in ("text", "code_inline"))
            )
        elif t.type in ("th_close", "td_close"):
            row.append(" ".join(cell))
            in_cell = False
        elif t.type == "tr_close":
            tables[-1].append(row)
    return next(t for t in tables if t[0][-1] == "verdict")


def _result(rows):
    base = {
        "check": "x",
        "name": "n",
        "setting": "s",
        "prediction": 1.0,
        "measured": 1.0,
        "se": 0.1,
        "seeds": 10,
        "tolerance": 0.4,
        "diverged": 0,
        "run_id": "abcdef123456",
    }
    st = {"quick": True, "seed": 0, "n_se_expect": 4, "n_se_bound": 3, "pathwise_tol": 1e-8}
    return {
        "passed": False,
        "checks": [base | r for r in rows],
        "timings_s": {"x": 1.0},
        "runs": {"abcdef123456": {"settings": st}},
        "interrupted": False,
    }


def test_pipes_are_escaped_and_verdicts_render():
    rows = [
        {"rule": "|mean − prediction| ≤ 4 SE", "kind": "expectation", "passed": True},
        {
            "rule": "mean ≤ bound + 3 SE",
            "kind": "upper bound",
            "passed": False,
            "setting": "‖P_HRP − P_A‖_F | odd",
        },
        {"rule": "max error ≤ tolerance", "kind": "zero", "passed": True},
    ]
    md = verify_markdown(_result(rows), {})
    table = table_rows(md)
    header, body = table[0], table[1:]
    assert all(len(r) == len(header) for r in body), body
    assert [r[-1] for r in body] == ["pass", "FAIL", "pass"]  # **FAIL** renders as FAIL
    assert body[0][header.index("rule")] == "|mean − prediction| ≤ 4 SE"
    pred = header.index("prediction")
    assert [r[pred] for r in body] == ["1 (expectation)", "1 (upper bound)", "0"]


def test_runs_into_one_folder_keep_each_others_verdicts(tmp_path):
    out = tmp_path / "v"
    for check in ("aligned", "hrp-identities"):
        assert (
            cli.main(
                [
                    "verify",
                    "--quick",
                    "--checks",
                    check,
                    "--no-figures",
                    "--quiet",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    doc = json.loads((out / "verify.json").read_text())
    assert [c["check"] for c in doc["checks"]].count("aligned") == 3
    assert {c["check"] for c in doc["checks"]} == {"aligned", "hrp-identities"}
    assert len(doc["runs"]) == 2 and doc["passed"]
    body = table_rows((out / "report.md").read_text())[1:]
    assert len(body) == len(doc["checks"]) and all(r[-1] == "pass" for r in body)
    # redoing a check replaces its rows instead of adding to them
    assert (
        cli.main(
            [
                "verify",
                "--quick",
                "--checks",
                "aligned",
                "--no-figures",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads((out / "verify.json").read_text())
    assert [c["check"] for c in doc["checks"]].count("aligned") == 3 and len(doc["runs"]) == 2
