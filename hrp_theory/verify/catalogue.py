"""The catalogue of ``hrp-sim verify``'s checks: name → (family module, function), and the
validation of check names. A family module is imported when one of its checks runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ._rules import Context, Outcome

#: The catalogue: check name → (family module, function). A family module is imported when one
#: of its checks runs, so importing this package stays light.
CHECKS: dict[str, tuple[str, str]] = {
    "random-asymmetric": ("asymmetric", "check_random_asymmetric"),  # 1
    "aligned": ("aligned", "check_aligned"),  # 2
    "hrp-identities": ("hrp", "check_hrp_identities"),  # 3
    "theorem-c": ("hrp", "check_theorem_c"),  # 4
    "rank1": ("hrp", "check_rank1"),  # 5
    "variance": ("asymmetric", "check_variance"),  # 6
    "transient": ("asymmetric", "check_transient"),  # 7
    "classic-flow": ("classic", "check_classic_flow"),  # 8
    "aligned-classic": ("classic", "check_aligned_classic"),  # 9
    "preheat-regimes": ("regimes", "check_preheat_regimes"),  # 10
    "anisotropic": ("anisotropic", "check_anisotropic"),  # 11
    "hmt": ("hmt", "check_hmt"),  # 12
}


def check_function(name: str) -> Callable[[Context], Outcome]:
    """The function of check ``name`` (imports its family module)."""
    module, fn = CHECKS[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), fn)


def check_names(names=None) -> tuple[str, ...]:
    """Validate check names; ``None`` means all of them, in catalogue order (an empty list is an
    error, not "all")."""
    if names is None:
        return tuple(CHECKS)
    names = tuple(names)
    if not names:
        raise ValueError(
            f"checks: empty list; name at least one of {', '.join(CHECKS)} (or "
            "drop --checks to run them all)"
        )
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(
            f"checks: unknown check {', '.join(map(repr, unknown))}; use any of {', '.join(CHECKS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("checks: a check is named twice; list each once")
    return names
