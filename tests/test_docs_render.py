"""The docs site's formulas are typeset: the built site, opened offline in headless Chromium,
shows KaTeX output for every formula of every page that states one, no TeX source, no console
error and no request outside the site (tools/render_check.py). Needs Debian's `chromium` and the
`browser` extra; skipped with its reason without them (CI installs both)."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import render_check

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason='Playwright absent: pip install -e ".[browser]"',
    ),
    pytest.mark.skipif(
        render_check.chromium_path() is None,
        reason="Chromium absent: apt-get install chromium",
    ),
    pytest.mark.skipif(
        shutil.which("mkdocs") is None, reason='mkdocs absent: pip install -e ".[docs]"'
    ),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "HRP_DOCS_EXECUTE": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_every_formula_is_typeset_offline(site, tmp_path):
    shot = tmp_path / "theory.png"
    report = render_check.check_pages(site, screenshot=shot)
    assert render_check.failures(report) == []
    theory = report["theory/"]
    # The theory page is the mathematics: hundreds of formulas, the displayed ones included,
    # in KaTeX's own fonts (shipped with the site, not fetched).
    assert theory["formulas"] > 300 and theory["display"] >= 10
    assert theory["katex_fonts_loaded"] >= 3
    assert shot.stat().st_size > 20_000


def test_the_check_fails_when_katex_is_missing(site, tmp_path):
    """The check can fail: without the shipped KaTeX every formula stays TeX source."""
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    (broken / "assets" / "katex" / "katex.min.js").write_text("")
    report = render_check.check_pages(broken, pages=("theory/",))
    bad = render_check.failures(report)
    assert any("not typeset" in line for line in bad)
    assert any("TeX source visible" in line for line in bad)
    assert any("console errors" in line for line in bad)  # "katex is not defined"
