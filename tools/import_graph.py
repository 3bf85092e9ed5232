"""The import graph of ``hrp_theory``: circles, back-edges, layer climbs and the largest modules.

    python tools/import_graph.py            # the counts and the offending edges
    python tools/import_graph.py --json F   # the same as JSON

Every ``import`` and ``from … import`` of the package's own modules counts, at any depth of the
file (inside functions too, and under ``TYPE_CHECKING``: a circle a type checker sees is still a
circle for a reader). An import of ``pkg.mod`` is an edge to ``pkg.mod``; ``from pkg import name``
is an edge to ``pkg.name`` when that is a module, else to ``pkg`` itself.

* **circles**: strongly connected components of more than one module (and modules that import
  themselves), with the edges inside them;
* **back-edges**: edges that close a cycle in a depth-first search over the modules in sorted
  order (zero exactly when there is no circle);
* **climbs**: edges from a lower layer to a higher one in ``LAYERS`` (the core must not import a
  real-model package, a study must not import the command line, ...), and edges from a module
  back up to a package that contains it (its ``__init__`` sits above it; ``__main__`` aside).

``tests/test_layout.py`` asserts zero circles, zero climbs and no module over 400 lines.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hrp_theory"
#: Layers, lowest first: a module may import its own layer and the layers below it. A prefix
#: ending in "." names the modules below it; any other names a module and its submodules.
LAYERS = (
    ("core", ("hrp_theory.",)),
    ("models", ("hrp_theory.models",)),
    ("studies", ("hrp_theory.layers", "hrp_theory.finetune", "hrp_theory.verify")),
    ("compat", ("hrp_theory.real", "hrp_theory.lora")),
    ("cli", ("hrp_theory.cli",)),
    ("facade", ("hrp_theory",)),  # the package's own __init__: the public surface
)
MAX_LINES = 400


def modules(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, level: int, here: str, is_package: bool) -> str:
    if level == 0:
        return name
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def edges(mods: dict[str, Path]) -> set[tuple[str, str]]:
    """``(importer, imported)`` pairs between the package's modules."""
    out = set()
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, mod, is_package)
                for a in node.names:
                    sub = f"{base}.{a.name}" if base else a.name
                    targets.append(sub if sub in mods else base)
            for t in targets:
                while t and t not in mods:  # pkg.mod.attr -> pkg.mod
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    out.add((mod, t))
                elif t == mod and isinstance(node, ast.Import):
                    out.add((mod, mod))
    return out


def circles(mods, es) -> list[list[str]]:
    """Strongly connected components with more than one module, or a self-import (Tarjan)."""
    graph = {m: sorted(b for a, b in es if a == m) for m in mods}
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or (v, v) in es:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for m in sorted(mods):
        if m not in index:
            visit(m)
    return sorted(comps)


def back_edges(mods, es) -> list[tuple[str, str]]:
    """Edges to a module still on the depth-first search's path (modules in sorted order)."""
    graph = {m: sorted(b for a, b in es if a == m) for m in mods}
    state, out = {}, []

    def visit(v):
        state[v] = 1
        for w in graph[v]:
            if state.get(w) == 1:
                out.append((v, w))
            elif w not in state:
                visit(w)
        state[v] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m)
    return out


def layer_of(mod: str) -> int:
    """Index in ``LAYERS`` of the most specific prefix that ``mod`` falls under."""
    best, depth = 0, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            hit = mod.startswith(p) if p.endswith(".") else mod == p or mod.startswith(p + ".")
            if hit and len(p) > depth:
                best, depth = i, len(p)
    return best


def climbs(es) -> list[tuple[str, str]]:
    """Edges from a lower layer to a higher one, or from a module up to a package holding it."""
    up = lambda a, b: a.startswith(b + ".") and not a.endswith(".__main__")
    return sorted((a, b) for a, b in es if layer_of(b) > layer_of(a) or up(a, b))


def sizes(mods) -> list[tuple[str, int]]:
    """``(module, lines)``, largest first."""
    return sorted(
        ((m, len(p.read_text().splitlines())) for m, p in mods.items()), key=lambda t: -t[1]
    )


def report(root: Path = ROOT) -> dict:
    mods = modules(root)
    es = edges(mods)
    comps = circles(mods, es)
    return {
        "modules": len(mods),
        "edges": len(es),
        "circles": comps,
        "circle_edges": sorted((a, b) for a, b in es if any(a in c and b in c for c in comps)),
        "back_edges": back_edges(mods, es),
        "climbs": climbs(es),
        "largest": sizes(mods)[:10],
        "over_limit": [(m, n) for m, n in sizes(mods) if n > MAX_LINES],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, help="also write the report as JSON here")
    a = ap.parse_args(argv)
    r = report()
    print(f"{r['modules']} modules, {r['edges']} import edges")
    print(f"circles: {len(r['circles'])}  {r['circles']}")
    print(f"edges inside circles: {len(r['circle_edges'])}")
    print(f"back-edges: {len(r['back_edges'])}  {r['back_edges']}")
    print(f"layer climbs: {len(r['climbs'])}  {r['climbs']}")
    print(f"modules over {MAX_LINES} lines: {r['over_limit']}")
    print("largest: " + ", ".join(f"{m} {n}" for m, n in r["largest"]))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
