"""Chunk programs kept on disk as ``jax.export`` artefacts, so that a later process skips tracing
and lowering them.

JAX's persistent cache (``runtime.compile_cache``) stores compiled executables keyed by the
lowered program, so a process must still trace and lower every program before it can find one:
in a cached ``hrp-sim verify --quick`` that was 11-13 s of 22 s (docs/performance.md). An
exported program is the lowered program itself; read back, it is compiled (from the persistent
cache) without being traced again.

The key of a program is exact or there is none: the package's source (a hash of every module),
JAX's version and trace context, the backend and device count, the function by module and name,
its static settings encoded strictly (``identity``: numbers, strings, tuples, NamedTuples,
frozen dataclasses, NumPy arrays by their bytes, the package's own functions; anything else
leaves the program uncached), and the arguments' tree, shapes and dtypes. Only the package's
own functions are kept, and none while one of its functions is replaced at run time by code
from outside it (``patched``: a monkeypatch in a notebook), which the source hash cannot see.
A program that cannot be exported, written or read back runs as the plain ``jax.jit`` function.
Files are written atomically (concurrent runs are safe) in ``hrp-exported/`` inside the
compilation cache's folder, and only when that cache is on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._fields import _Traced

#: The file format's version (part of every key).
FORMAT = 1


class Unkeyable(Exception):
    """A static setting that has no exact, process-independent encoding."""


def encode(x) -> str:
    """An exact text for a static setting (``Unkeyable`` when there is none)."""
    if x is None or isinstance(x, (bool, int, float, complex, str, bytes)):
        return f"{type(x).__name__}:{x!r}"
    if isinstance(x, _Traced):  # a traced config field's stand-in: its value is an argument
        return "traced"
    if isinstance(x, np.generic):
        return f"np.{x.dtype}:{x.item()!r}"
    if isinstance(x, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
        return f"array:{x.dtype}:{x.shape}:{digest}"
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return f"{_name(type(x))}({','.join(encode(v) for v in x)})"
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__}({','.join(encode(v) for v in x)})"
    if isinstance(x, dict):
        return "dict(" + ",".join(sorted(f"{encode(k)}={encode(v)}" for k, v in x.items())) + ")"
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        if not type(x).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise Unkeyable(f"a mutable dataclass {type(x).__qualname__}")
        fields = ",".join(f"{f.name}={encode(getattr(x, f.name))}" for f in dataclasses.fields(x))
        return f"{_name(type(x))}({fields})"
    if (inspect.isfunction(x) or isinstance(x, type)) and _ours(x):
        return f"fn:{_name(x)}"  # the package's own: the source hash covers its code
    raise Unkeyable(f"{type(x).__qualname__}")


def _name(obj) -> str:
    """``module.qualname`` of a module-level class or function (``Unkeyable`` for a local one)."""
    qual = getattr(obj, "__qualname__", "")
    if not qual or "<locals>" in qual:
        raise Unkeyable(f"a local object {qual or obj!r}")
    return f"{obj.__module__}.{qual}"


@functools.cache
def source_hash() -> str:
    """A hash of every module of the package (any edit changes every key)."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _ours(obj) -> bool:
    """Whether ``obj`` (a function or class) is the package's own."""
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "hrp_theory"


@functools.cache
def _library_folders() -> tuple[str, ...]:
    """The package's folder and the interpreter's library folders (stdlib, site-packages)."""
    paths = sysconfig.get_paths()
    found = {str(Path(__file__).parent)}
    found |= {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(found)


def patched() -> bool:
    """Whether a function of the package's namespaces (or of a registry of functions there,
    such as ``inits.INIT_FNS``) was replaced at run time by one defined outside the package and
    the installed libraries (in a notebook, a script, a test): the source hash would not see
    it, so no program is kept or read back while it is so."""
    libraries = _library_folders()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "hrp_theory" or module is None:
            continue
        for value in list(vars(module).values()):
            for f in value.values() if isinstance(value, dict) else (value,):
                code = getattr(getattr(f, "__wrapped__", f), "__code__", None)
                if code is not None and not code.co_filename.startswith(libraries):
                    return True
    return False


def _context() -> str | None:
    """JAX's version, backend, device count and the configuration that shapes a trace (None
    when part of it has no process-independent text)."""
    from jax._src import config as jax_config  # the trace context jax.jit keys its cache by

    parts = []
    for item in jax_config.trace_context():
        if type(item).__name__ == "AxisEnv":  # the named axes in scope: a repr by address
            item = tuple(
                tuple(sorted(map(str, getattr(item, f, ()))))
                for f in ("axis_sizes", "spmd_axis_names", "explicit_mesh_axis_names")
            )
        text = repr(item)
        if " at 0x" in text:
            return None
        parts.append(text)
    return repr((jax.__version__, jax.default_backend(), jax.device_count(), parts))


def identity(fn, static, *layout) -> str | None:
    """The exact identity of the program ``fn(static)`` laid out as ``layout`` (numbers), or
    None when it has none: ``fn`` not the package's own, a static setting with no exact
    encoding, or a function of the package replaced at run time (``patched``)."""
    if not _ours(fn) or patched():  # code the source hash does not cover
        return None
    try:
        return "|".join([f"v{FORMAT}", source_hash(), _name(fn), encode(static), encode(layout)])
    except Unkeyable:
        return None


def folder() -> Path | None:
    """Where exported programs go: ``hrp-exported/`` in JAX's compilation cache folder; None
    when that cache is off, when ``HRP_EXPORT_CACHE=off``, or without ``flatbuffers`` (which
    ``jax.export`` serialises with)."""
    cache = getattr(jax.config, "jax_compilation_cache_dir", None)
    off = os.environ.get("HRP_EXPORT_CACHE", "").strip().lower() in ("0", "off", "no", "false")
    if off or not cache or importlib.util.find_spec("flatbuffers") is None:  # its serialiser
        return None
    return Path(cache) / "hrp-exported"


def _namedtuples(treedef) -> set:
    """The NamedTuple classes of a tree's nodes (they must be registered to be serialised)."""
    found, stack = set(), [treedef]
    while stack:
        node = stack.pop()
        data = node.node_data()
        if data is not None and issubclass(data[0], tuple) and hasattr(data[0], "_fields"):
            found.add(data[0])
        stack.extend(node.children())
    return found


@functools.cache
def _register(module: str, qualname: str) -> None:
    """Register a NamedTuple class for ``jax.export`` serialisation under its full name."""
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    jax.export.register_namedtuple_serialization(cls, serialized_name=f"{module}.{qualname}")


def _write(path: Path, exp) -> None:
    """``exp`` at ``path``, atomically: a JSON line naming its NamedTuple classes, then the
    serialised program."""
    classes = sorted(_namedtuples(exp.in_tree) | _namedtuples(exp.out_tree), key=_name)
    names = [[c.__module__, c.__qualname__] for c in classes]
    for module, qualname in names:
        _register(module, qualname)
    body = json.dumps({"namedtuples": names}).encode() + b"\n" + bytes(exp.serialize())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path):
    """The exported program at ``path`` (its NamedTuple classes registered first)."""
    head, _, body = path.read_bytes().partition(b"\n")
    for module, qualname in json.loads(head)["namedtuples"]:
        _register(module, qualname)
    return jax.export.deserialize(bytearray(body))


def _shapes(args) -> str:
    """The arguments' tree, shapes, dtypes and weak types."""
    leaves, tree = jax.tree.flatten(args)
    return f"{tree}|{[str(jax.typeof(x)) for x in leaves]}"


def program(jitted, ident: str | None, options: dict | None, mesh=None, on_read=None):
    """``jitted`` (a ``jax.jit`` function), its programs kept in ``folder()`` under ``ident``
    (``identity``) and the arguments' shapes: read back when there, exported and written when
    not. ``options``: its XLA compiler options; ``mesh``: the device mesh it runs on (None: one
    device); ``on_read()`` runs when a program is read back instead of traced. The result's
    ``lower`` lowers the program that runs for those arguments. Without a folder or an
    identity, or in a run over several processes, ``jitted`` itself."""
    where = folder()
    if where is None or ident is None or jax.process_count() > 1:
        return jitted
    programs: dict = {}

    def build(args):
        context = _context()
        if context is None:
            return jitted
        name = hashlib.sha256((ident + context + _shapes(args)).encode()).hexdigest()
        path = where / f"{name}.jaxexp"
        exp = None
        if path.exists():
            try:
                exp = _read(path)
                if on_read is not None:
                    on_read()
            except Exception:  # damaged, or from another version: export it again
                exp = None
        if exp is None:
            try:
                exp = jax.export.export(jitted)(*args)
            except Exception:  # not exportable: the plain program
                return jitted
            # not serialisable (or no room): the program is used in this process only
            with contextlib.suppress(Exception):
                _write(path, exp)
        kw = {}
        if mesh is not None:
            from jax.sharding import NamedSharding
            from jax.sharding import PartitionSpec as P

            kw["in_shardings"] = NamedSharding(mesh, P())
        return jax.jit(exp.call, compiler_options=options, **kw)

    def get(args):
        key = _shapes(args)
        if key not in programs:
            programs[key] = build(args)
        return programs[key]

    def call(*args):
        return get(args)(*args)

    call.lower = lambda *args: get(args).lower(*args)  # the program that runs, as jax.jit's
    return call
