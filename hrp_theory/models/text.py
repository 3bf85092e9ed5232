"""Real text, offline: the Pang & Lee sentence-polarity set from Debian's ``python3-pattern``.

4000 movie-review sentences, 2000 positive (label ``"1"``) and 2000 negative (``"-1"``), shipped
as ``polarity-en-pang&lee2.csv`` (UTF-8 with BOM) in the package's test corpora. ``fetch`` gets
it from the Debian archive (``apt-get download``; no install, no root) into the data folder:
``$HRP_DATA`` if set, else ``~/.cache/hrp-theory/data``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

POLARITY = "polarity-en-pang&lee2.csv"
DEB = "python3-pattern"
IN_DEB = "usr/share/doc/python3-pattern/test/corpora/" + POLARITY
HOW = (
    f"get it with `hrp-sim fetch-data` (Debian package {DEB}: apt-get download {DEB} && "
    f"dpkg-deb -x {DEB}_*.deb DIR; the file is DIR/{IN_DEB}; run `apt-get update` first on a "
    "fresh machine), then set HRP_DATA to its folder or pass --data PATH"
)


def data_dir() -> Path:
    return Path(os.environ.get("HRP_DATA") or Path.home() / ".cache" / "hrp-theory" / "data")


def polarity_path(path=None) -> Path:
    """The polarity CSV: ``path`` (a file or a folder holding it), else the data folder."""
    p = Path(path).expanduser() if path is not None else data_dir()
    if p.is_dir():
        p = p / POLARITY
    if not p.is_file():
        raise FileNotFoundError(f"data: the Pang & Lee polarity set is not at {str(p)!r}; {HOW}")
    return p


def load_polarity(path=None) -> tuple[list[str], np.ndarray]:
    """``(sentences, labels)`` with labels 1 (positive) and 0 (negative), in file order."""
    p = polarity_path(path)
    texts, labels = [], []
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                if len(row) != 2 or row[0] not in ("1", "-1"):
                    raise ValueError(
                        f'data: {str(p)!r} row {i + 1} is not ("1"|"-1", sentence): '
                        f"{row[:2]!r}; the file is damaged, fetch it again ({HOW})"
                    )
                labels.append(1 if row[0] == "1" else 0)
                texts.append(row[1].strip())
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(
            f"data: {str(p)!r} is not the polarity CSV (UTF-8 text, two columns): {e}; "
            f"fetch it again ({HOW})"
        ) from None
    if not texts:
        raise ValueError(f"data: {str(p)!r} is empty; fetch it again ({HOW})")
    return texts, np.asarray(labels, np.int32)


def split(n: int, held_out: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random ``(train, held-out)`` index split."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(n * held_out))
    return np.sort(order[k:]), np.sort(order[:k])


def fetch(dest=None) -> Path:
    """Download ``python3-pattern`` from the Debian archive and keep the polarity CSV."""
    dest = Path(dest) if dest is not None else data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError(
            f"fetch-data needs Debian's apt-get and dpkg-deb; on another system "
            f"download the {DEB} .deb by hand and extract {IN_DEB} into {dest}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(["apt-get", "download", DEB], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{DEB}_*.deb"))
        if run.returncode != 0 or not debs:
            raise RuntimeError(
                f"apt-get download {DEB} failed ({run.stderr.strip()[-300:]}); "
                "run `apt-get update` first (as root) and retry"
            )
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        src = Path(tmp) / "x" / IN_DEB
        final = dest / POLARITY
        part = final.with_name(final.name + ".part")
        shutil.copyfile(src, part)
        os.replace(part, final)
    load_polarity(final)  # check it parses
    return final
