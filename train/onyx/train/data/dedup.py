"""Find duplicate images in a dataset folder: train/val leakage and one image under two labels.

    onyx data dedup data/pets             # report; exit 1 on leakage or label conflicts
    onyx data dedup data/pets --json      # the same report as JSON
    onyx data dedup data/pets --check     # CI: a summary line and the exit status only
    onyx data dedup data/pets --apply     # delete the extra copies (never without --apply)

Exact duplicates share their bytes (SHA-256) or their decoded pixels. Near duplicates
(re-encoded, resized, slightly recoloured copies) are found in two steps, because a perceptual
hash alone is not evidence on low-texture images: a black silhouette and a dark sky both hash
to (nearly) all zeros, and two crops of one smooth sky from opposite halves of a photo hash
alike.

1. Candidates: 64-bit difference hashes (dHash: is each pixel of a 9x8 grayscale thumbnail
   brighter than its right neighbour?) within `max_distance` bits.
2. Confirmation on 32x32 grayscale thumbnails: the mean absolute difference is at most
   `max_mean_difference` (0..1; a black crop is not a dark-blue sky); the images correlate
   (Pearson >= `min_correlation`), and so do their *details* (each thumbnail minus its 3x3 box
   blur, Pearson >= `min_detail_correlation`). A resize or re-encode keeps the details of a
   picture (correlation ~0.99 on real photos); two different smooth regions share a gradient
   but not their details (~0.0-0.5). A pair where either image has almost no detail (standard
   deviation of the details under `min_detail`) cannot be confirmed: it is listed as
   "unconfirmed" for a human to look at, never counted as leakage and never deleted.

A confirmed pair whose files sit in different top-level splits (train/, val/, test/) is leakage:
validation would score memorised images. A confirmed pair under two different class folders is a
label conflict: the same picture taught as two classes. Of each group the copy kept is the one in
the earliest split (train before val before test), so cleaning takes leaked copies out of
validation; a group with a label conflict is not touched by --apply (which label is right is a
human's call). Only numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onyx.contract.errors import ServeError
from onyx.contract.preprocess import IMAGE_SUFFIXES, decode_image

log = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "val", "test")
THUMBNAIL = 32


@dataclass(frozen=True)
class Thresholds:
    # dHash bits that may differ for a pair to be a candidate.
    max_distance: int = 4
    # On 0..1 grayscale: a 10% brightness change moves a typical photo by ~0.05.
    max_mean_difference: float = 0.1
    min_correlation: float = 0.95
    # Resized/re-encoded copies of real photos: 0.99; unrelated smooth regions: below 0.5.
    min_detail_correlation: float = 0.9
    # Below this standard deviation of the details an image is too flat to confirm anything.
    min_detail: float = 0.01


@dataclass(frozen=True)
class Fingerprint:
    path: Path
    sha256: str  # of the file's bytes
    pixels: str  # SHA-256 of the decoded RGB pixels and size
    dhash: int
    thumbnail: np.ndarray  # (32, 32) float64 grayscale on 0..1
    details: np.ndarray  # (32, 32) thumbnail minus its 3x3 box blur


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    kind: str  # "exact", "near" or "unconfirmed"
    distance: int  # differing dHash bits
    correlation: float  # of the details; 1.0 for exact copies, nan when too flat
    leak: bool  # the two files are in different splits
    conflict: bool  # the two files are under different class folders


@dataclass
class DedupReport:
    files: int = 0
    pairs: list[Pair] = field(default_factory=list)
    groups: list[list[Path]] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def confirmed(self) -> list[Pair]:
        return [p for p in self.pairs if p.kind != "unconfirmed"]

    @property
    def unconfirmed(self) -> list[Pair]:
        return [p for p in self.pairs if p.kind == "unconfirmed"]

    @property
    def leaks(self) -> list[Pair]:
        return [p for p in self.confirmed if p.leak]

    @property
    def conflicts(self) -> list[Pair]:
        return [p for p in self.confirmed if p.conflict]

    @property
    def failed(self) -> bool:
        """What --check gates on: leakage or label conflicts."""
        return bool(self.leaks or self.conflicts)


def dhash(image: object, size: int = 8) -> int:
    """64-bit difference hash of a PIL image."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    small = image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.int16)  # (8, 9)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def thumbnail(image: object) -> np.ndarray:
    """(32, 32) float64 grayscale on 0..1, area-averaged (robust to the resize of a copy)."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    small = image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def details(thumb: np.ndarray) -> np.ndarray:
    """The thumbnail minus its 3x3 box blur: edges and texture, without smooth gradients."""
    padded = np.pad(thumb, 1, mode="edge")
    rows, cols = thumb.shape
    blurred = sum(padded[i : i + rows, j : j + cols] for i in range(3) for j in range(3)) / 9
    return np.asarray(thumb - blurred)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays; nan when either is constant."""
    x, y = a.ravel() - a.mean(), b.ravel() - b.mean()
    scale = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / scale) if scale > 0 else float("nan")


def fingerprint(path: Path) -> Fingerprint:
    """Raises ServeError for a file that does not decode as an image."""
    data = path.read_bytes()
    image = decode_image(data).convert("RGB")
    pixels = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
    thumb = thumbnail(image)
    return Fingerprint(
        path, hashlib.sha256(data).hexdigest(), pixels, dhash(image), thumb, details(thumb)
    )


def confirm(a: Fingerprint, b: Fingerprint, limits: Thresholds) -> tuple[str, float]:
    """(kind, detail correlation) of a candidate pair: "exact", "near", "unconfirmed" (too
    flat to tell) or "" (not duplicates)."""
    if a.sha256 == b.sha256 or a.pixels == b.pixels:
        return "exact", 1.0
    if float(np.abs(a.thumbnail - b.thumbnail).mean()) > limits.max_mean_difference:
        return "", float("nan")
    if min(a.details.std(), b.details.std()) < limits.min_detail:
        return "unconfirmed", float("nan")
    detail = correlation(a.details, b.details)
    alike = correlation(a.thumbnail, b.thumbnail) >= limits.min_correlation
    return ("near" if alike and detail >= limits.min_detail_correlation else ""), detail


def split_of(path: Path, root: Path) -> str:
    top = path.relative_to(root).parts[0]
    return top if top in SPLIT_ORDER else ""


def label_of(path: Path, root: Path) -> str:
    """The class folder: the first folder below the split (or below the root)."""
    parts = path.relative_to(root).parts[:-1]
    if parts and parts[0] in SPLIT_ORDER:
        parts = parts[1:]
    return parts[0] if parts else ""


def hamming(hashes: np.ndarray, value: np.uint64) -> np.ndarray:
    """Differing bits between `value` and each of `hashes` (uint64)."""
    xor = np.bitwise_xor(hashes, value).view(np.uint8).reshape(-1, 8)
    return np.asarray(np.unpackbits(xor, axis=1).sum(axis=1))


def _fingerprints(root: Path, report: DedupReport) -> list[Fingerprint]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    prints = []
    for path in files:
        try:
            prints.append(fingerprint(path))
        except (ServeError, OSError) as exc:
            report.unreadable.append((path, str(exc)))
    report.files = len(prints)
    return prints


def find_duplicates(
    root: Path, max_distance: int = 4, thresholds: Thresholds | None = None
) -> DedupReport:
    """All duplicate pairs and groups under `root`, and which files removal would delete."""
    limits = thresholds or Thresholds(max_distance=max_distance)
    report = DedupReport()
    prints = _fingerprints(root, report)
    hashes = np.array([p.dhash for p in prints], dtype=np.uint64)
    by_pixels: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(prints):
        by_pixels[item.pixels].append(index)
    for i, item in enumerate(prints):
        distances = hamming(hashes[i + 1 :], hashes[i])
        # Exact copies always pair, whatever the hash of a flat image did.
        candidates = {i + 1 + int(o) for o in np.flatnonzero(distances <= limits.max_distance)}
        candidates |= {j for j in by_pixels[item.pixels] if j > i}
        for j in sorted(candidates):
            kind, detail = confirm(item, prints[j], limits)
            if kind:
                distance = int(distances[j - i - 1])
                report.pairs.append(_pair(item.path, prints[j].path, kind, distance, detail, root))
    report.groups = _groups(report.confirmed)
    report.remove = [
        path
        for group in report.groups
        if not _has_conflict(group, root)
        for path in _ranked(group, root)[1:]
    ]
    return report


def _pair(first: Path, second: Path, kind: str, distance: int, detail: float, root: Path) -> Pair:
    leak = split_of(first, root) != split_of(second, root)
    conflict = label_of(first, root) != label_of(second, root)
    return Pair(first, second, kind, distance, detail, leak, conflict)


def _has_conflict(group: list[Path], root: Path) -> bool:
    return len({label_of(path, root) for path in group}) > 1


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


def summary_line(report: DedupReport) -> str:
    exact = sum(p.kind == "exact" for p in report.pairs)
    near = len(report.confirmed) - exact
    return (
        f"{report.files} images: {exact} exact and {near} near-duplicate pairs in "
        f"{len(report.groups)} groups; {len(report.leaks)} pairs straddle splits (leakage); "
        f"{len(report.conflicts)} label conflicts; {len(report.unconfirmed)} unconfirmed "
        f"(too flat to tell); {len(report.unreadable)} unreadable"
    )


def format_report(report: DedupReport, root: Path) -> str:
    lines = [summary_line(report)]
    for pair in report.pairs:
        tags = "".join(
            tag for tag, on in ((" LEAK", pair.leak), (" CONFLICT", pair.conflict)) if on
        )
        if pair.kind == "unconfirmed":
            tags = " (not acted on)"
        lines.append(
            f"  {pair.kind:<11} d={pair.distance:<2}{tags}  {pair.first.relative_to(root)}"
            f"  ==  {pair.second.relative_to(root)}"
        )
    for path, reason in report.unreadable:
        lines.append(f"  unreadable  {path.relative_to(root)}: {reason}")
    return "\n".join(lines)


def report_json(report: DedupReport, root: Path) -> dict[str, Any]:
    """The report as JSON types, paths relative to `root`."""

    def rel(path: Path) -> str:
        return str(path.relative_to(root))

    def number(value: float) -> float | None:
        return None if np.isnan(value) else round(value, 4)

    return {
        "root": str(root),
        "files": report.files,
        "pairs": [
            {
                "first": rel(p.first),
                "second": rel(p.second),
                "kind": p.kind,
                "distance": p.distance,
                "detail_correlation": number(p.correlation),
                "leak": p.leak,
                "conflict": p.conflict,
            }
            for p in report.pairs
        ],
        "groups": [[rel(path) for path in group] for group in report.groups],
        "leaks": len(report.leaks),
        "conflicts": len(report.conflicts),
        "unconfirmed": len(report.unconfirmed),
        "remove": [rel(path) for path in report.remove],
        "unreadable": [{"path": rel(path), "reason": why} for path, why in report.unreadable],
    }
