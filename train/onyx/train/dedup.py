"""Find exact and near-duplicate images in a dataset folder, including train/val leakage.

    onyx data dedup data/pets             # report (dry run)
    onyx data dedup data/pets --apply     # delete all but one image of each duplicate group

Exact duplicates share a SHA-256 of their bytes. Near duplicates (re-encoded, resized, slightly
recoloured copies) have 64-bit difference hashes (dHash: is each pixel of a 9x8 grayscale thumbnail
brighter than its right neighbour?) within `max_distance` bits. A pair whose files sit in different
top-level splits (train/, val/, test/) is leakage: validation would score memorised images. Of each
group the copy kept is the one in the earliest split (train before val before test), so cleaning
takes the leaked copies out of validation. Only numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onyx.serve.errors import ServeError
from onyx.serve.preprocess import IMAGE_SUFFIXES, decode_image

log = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    kind: str  # "exact" or "near"
    distance: int  # differing dHash bits (0 for exact)
    leak: bool  # the two files are in different splits


@dataclass
class DedupReport:
    files: int = 0
    pairs: list[Pair] = field(default_factory=list)
    groups: list[list[Path]] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def leaks(self) -> list[Pair]:
        return [p for p in self.pairs if p.leak]


def dhash(image: object, size: int = 8) -> int:
    """64-bit difference hash of a PIL image."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    small = image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.int16)  # (8, 9)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def split_of(path: Path, root: Path) -> str:
    top = path.relative_to(root).parts[0]
    return top if top in SPLIT_ORDER else ""


def hamming(hashes: np.ndarray, value: np.uint64) -> np.ndarray:
    """Differing bits between `value` and each of `hashes` (uint64)."""
    xor = np.bitwise_xor(hashes, value).view(np.uint8).reshape(-1, 8)
    return np.asarray(np.unpackbits(xor, axis=1).sum(axis=1))


def _hash_files(root: Path, report: DedupReport) -> tuple[list[Path], list[str], np.ndarray]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    kept, digests, hashes = [], [], []
    for path in files:
        data = path.read_bytes()
        try:
            image = decode_image(data)
        except ServeError as exc:
            report.unreadable.append((path, str(exc)))
            continue
        kept.append(path)
        digests.append(hashlib.sha256(data).hexdigest())
        hashes.append(dhash(image))
    report.files = len(kept)
    return kept, digests, np.array(hashes, dtype=np.uint64)


def find_duplicates(root: Path, max_distance: int = 4) -> DedupReport:
    """All duplicate pairs and groups under `root`, and which files removal would delete."""
    report = DedupReport()
    files, digests, hashes = _hash_files(root, report)
    for i in range(len(files)):
        distances = hamming(hashes[i + 1 :], hashes[i])
        for offset in np.flatnonzero(distances <= max_distance):
            j = i + 1 + int(offset)
            exact = digests[i] == digests[j]
            leak = split_of(files[i], root) != split_of(files[j], root)
            report.pairs.append(
                Pair(
                    files[i],
                    files[j],
                    "exact" if exact else "near",
                    0 if exact else int(distances[offset]),
                    leak,
                )
            )
    report.groups = _groups(report.pairs)
    report.remove = [path for group in report.groups for path in _ranked(group, root)[1:]]
    return report


def _groups(pairs: list[Pair]) -> list[list[Path]]:
    """Connected components of the duplicate graph (union-find)."""
    parent: dict[Path, Path] = {}

    def find(path: Path) -> Path:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for pair in pairs:
        parent[find(pair.first)] = find(pair.second)
    members: dict[Path, list[Path]] = defaultdict(list)
    for path in parent:
        members[find(path)].append(path)
    return sorted(sorted(group) for group in members.values())


def _ranked(group: list[Path], root: Path) -> list[Path]:
    """The copy to keep first: earliest split, then path order."""

    def rank(path: Path) -> tuple[int, str]:
        split = split_of(path, root)
        return (SPLIT_ORDER.index(split) if split else -1, str(path))

    return sorted(group, key=rank)


def apply_removal(report: DedupReport) -> int:
    for path in report.remove:
        path.unlink()
        log.info("removed %s", path)
    return len(report.remove)


def format_report(report: DedupReport, root: Path) -> str:
    exact = sum(p.kind == "exact" for p in report.pairs)
    lines = [
        f"{report.files} images: {exact} exact and {len(report.pairs) - exact} near-duplicate "
        f"pairs in {len(report.groups)} groups; {len(report.leaks)} pairs straddle splits "
        f"(leakage); {len(report.unreadable)} unreadable"
    ]
    for pair in report.pairs:
        tag = " LEAK" if pair.leak else ""
        lines.append(
            f"  {pair.kind:<5} d={pair.distance:<2}{tag}  {pair.first.relative_to(root)}"
            f"  ==  {pair.second.relative_to(root)}"
        )
    for path, reason in report.unreadable:
        lines.append(f"  unreadable  {path.relative_to(root)}: {reason}")
    return "\n".join(lines)
