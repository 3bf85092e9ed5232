"""Old import paths that keep working for one release, with a ``DeprecationWarning``.

``hrp_theory.real.*`` (split into ``models``, ``layers`` and ``finetune``) and
``hrp_theory.lora`` (now ``hrp_theory.factors``) are shims built from these two functions;
``tests/test_layout.py`` imports every old path.
"""

from __future__ import annotations

import importlib
import sys
import warnings

RELEASE = "0.2"  # the release that removes the old paths


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path works until hrp-theory {RELEASE}",
        DeprecationWarning,
        stacklevel=4,
    )


def alias(old: str, new: str) -> None:
    """Make module ``old`` the module ``new`` (``sys.modules``), after a warning: every name,
    private ones too, and ``monkeypatch`` on the old path reach the new module."""
    _warn(old, new)
    sys.modules[old] = importlib.import_module(new)


def forward(old: str, modules: tuple[str, ...], renamed: dict[str, str] | None = None):
    """A module ``__getattr__`` for an old module whose names now live in several ``modules``
    (searched in order); ``renamed`` maps an old name to ``"module:new_name"``."""
    _warn(old, " and ".join(modules))
    renamed = renamed or {}

    def __getattr__(name: str):
        if name in renamed:
            module, _, new = renamed[name].partition(":")
            return getattr(importlib.import_module(module), new)
        for module in modules:
            m = importlib.import_module(module)
            if hasattr(m, name):
                return getattr(m, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
