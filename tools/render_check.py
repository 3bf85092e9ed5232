"""Open pages of the built docs site in headless Chromium, offline, and check that their
formulas were typeset: every `.arithmatex` element holds KaTeX output, no TeX source is left in
the visible text, the console has no error and no request left the local server.

    mkdocs build -d /tmp/site && python tools/render_check.py /tmp/site \
        --screenshot docs/assets/theory_page.png

Needs Debian's `chromium` (`apt-get install chromium`) and `pip install -e ".[browser]"`
(Playwright, driving the system Chromium; it downloads no browser). Exit 0 when every page
passes, 1 with one line per failure otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

# Every page that states a formula (the theory page first: its screenshot is kept).
PAGES = (
    "theory/",
    "checks/",
    "experiments/",
    "performance/",
    "real-models/",
    "troubleshooting/",
    "layout/",
    "api/",
    "",
)
CHROMIUM = "/usr/bin/chromium"
# What a formula left as source looks like in the rendered text.
RAW_TEX = re.compile(
    r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(?:Vert|sigma|mathbb|operatorname|frac|sum|top)\b"
)
FLAGS = [  # as the machine notes say: no background traffic, no sandbox as root
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)


@contextmanager
def serve(site: Path):
    """The built site on 127.0.0.1 (an ephemeral port), the way `mkdocs serve` shows it."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def check_pages(
    site: Path, pages=PAGES, screenshot: Path | None = None, timeout_ms: int = 30_000
) -> dict:
    """Per page: formulas found, typeset, raw TeX left, console errors, outside requests."""
    from playwright.sync_api import sync_playwright

    site = Path(site)
    if not (site / "index.html").exists():
        raise ValueError(
            f"{site} is not a built site (no index.html): run `mkdocs build -d {site}`"
        )
    exe = chromium_path()
    if exe is None:
        raise ValueError("no Chromium found: install Debian's package (`apt-get install chromium`)")
    report = {}
    with serve(site) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=FLAGS)
        try:
            for page_path in pages:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                outside: list[str] = []
                page.on(
                    "console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None
                )
                page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))

                page.route("**/*", _offline(base, outside))
                page.goto(base + page_path, wait_until="networkidle", timeout=timeout_ms)
                counts = page.evaluate(
                    """() => {
                        const all = [...document.querySelectorAll('.arithmatex')];
                        const typeset = all.filter(e => e.querySelector('.katex'));
                        const fonts = [...document.fonts].filter(f => f.family.startsWith('KaTeX'));
                        return {formulas: all.length, typeset: typeset.length,
                                display: all.filter(e => e.tagName === 'DIV').length,
                                katex_fonts_loaded: fonts.filter(f => f.status === 'loaded').length,
                                text: document.querySelector('article').innerText};
                    }"""
                )
                text = counts.pop("text")
                # MathML copies are hidden; the visible text must hold no TeX source.
                counts["raw_tex_left"] = sorted(set(RAW_TEX.findall(text)))
                counts["console_errors"] = errors
                counts["outside_requests"] = outside
                if screenshot is not None and page_path == pages[0]:
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot), full_page=False, clip=_clip(page))
                report[page_path] = counts
                page.close()
        finally:
            browser.close()
    return report


def _offline(base: str, outside: list[str]):
    """A route handler: the local site passes, anything else is recorded and refused."""

    def route(r, request):
        if request.url.startswith(base):
            r.continue_()
        else:
            outside.append(request.url)
            r.abort()

    return route


def _clip(page) -> dict:
    """The first screenful of the article that shows a display formula."""
    box = page.locator("div.arithmatex").first.bounding_box()
    top = max(0.0, (box["y"] if box else 0.0) - 350)
    page.set_viewport_size({"width": 1280, "height": int(top) + 900})
    return {"x": 0, "y": top, "width": 1280, "height": 900}


def failures(report: dict) -> list[str]:
    out = []
    for page, c in report.items():
        if c["formulas"] == 0:
            out.append(f"{page}: no formula found (is pymdownx.arithmatex configured?)")
        if c["typeset"] != c["formulas"]:
            out.append(
                f"{page}: {c['formulas'] - c['typeset']} of {c['formulas']} formulas not typeset"
            )
        if c["raw_tex_left"]:
            out.append(f"{page}: TeX source visible: {c['raw_tex_left']}")
        if c["console_errors"]:
            out.append(f"{page}: console errors: {c['console_errors'][:3]}")
        if c["outside_requests"]:
            out.append(f"{page}: requests outside the site: {c['outside_requests'][:3]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", type=Path, help="a built site (mkdocs build -d SITE)")
    ap.add_argument("--screenshot", type=Path, help="PNG of the theory page's first formulas")
    args = ap.parse_args(argv)
    try:
        report = check_pages(args.site, screenshot=args.screenshot)
    except ValueError as exc:
        print(f"render_check: {exc}", file=sys.stderr)
        return 2
    for page, c in report.items():
        print(
            f"{page}: {c['typeset']}/{c['formulas']} formulas typeset ({c['display']} display), "
            f"{c['katex_fonts_loaded']} KaTeX fonts loaded, {len(c['console_errors'])} console "
            f"errors, {len(c['outside_requests'])} outside requests"
        )
    bad = failures(report)
    for line in bad:
        print(line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
