"""The documentation a newcomer trusts: every Python block of the README and docs runs as
written, and every "§" the code cites is a heading of docs/theory.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import xla_flags

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, tmp_path):
    code = "\n".join(python_blocks(page))
    env = dict(os.environ, MPLBACKEND="Agg")
    env["XLA_FLAGS"] = xla_flags()  # the devices: the child's own configure()
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"{page.name}:\n{run.stderr[-3000:]}"


def theory_sections() -> set[str]:
    heads = re.findall(
        r"^#{2,3} §(\d+(?:\.\d+)?)\b", (ROOT / "docs" / "theory.md").read_text(), re.M
    )
    return set(heads)


def test_every_section_the_code_cites_exists():
    sections = theory_sections()
    assert {"0", "3.2", "5.2", "6", "8"} <= sections
    cited = {}
    for path in (ROOT / "hrp_theory").rglob("*.py"):
        for ref in re.findall(r"§(\d+(?:\.\d+)?)", path.read_text()):
            cited.setdefault(ref, path.name)
    missing = {ref: f for ref, f in cited.items() if ref not in sections}
    assert cited and not missing, f"§ references with no heading in docs/theory.md: {missing}"


def test_code_cites_no_file_outside_the_repository():
    """No reference to the notes the project started from (THEORY.md, REAL_DATA.md)."""
    bad = [
        f"{p.relative_to(ROOT)}:{i + 1}"
        for p in (ROOT / "hrp_theory").rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines())
        if re.search(r"THEORY(\.md)? ?§|THEORY\.md|REAL_DATA|DESIGN\.md", line)
    ]
    assert not bad, bad
