"""`onyx data dedup`: exact and near duplicates, leakage across splits, dry run vs --apply."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from PIL import Image, ImageEnhance

from onyx.cli import main
from onyx.train.dedup import dhash, find_duplicates
from tests.train.photos import real_photos


def build(root: Path) -> dict[str, Path]:
    photos = real_photos()
    (root / "train" / "cat").mkdir(parents=True)
    (root / "val" / "cat").mkdir(parents=True)
    (root / "train" / "other").mkdir(parents=True)
    paths = {
        "cat": root / "train" / "cat" / "chelsea.png",
        "copy": root / "train" / "cat" / "chelsea_copy.png",
        "leak": root / "val" / "cat" / "chelsea_small.jpg",
        "coffee": root / "train" / "other" / "coffee.png",
        "rocket": root / "train" / "other" / "rocket.png",
    }
    photos["cat"].save(paths["cat"])
    shutil.copy(paths["cat"], paths["copy"])
    # Re-encoded, resized and brightened: the same picture, different bytes.
    smaller = photos["cat"].resize((200, 150), Image.Resampling.BILINEAR)
    ImageEnhance.Brightness(smaller).enhance(1.1).save(paths["leak"], quality=80)
    photos["coffee"].save(paths["coffee"])
    photos["rocket"].save(paths["rocket"])
    return paths


def test_finds_exact_and_near_duplicates_and_leakage(tmp_path: Path) -> None:
    paths = build(tmp_path)
    report = find_duplicates(tmp_path)
    kinds = {(p.first.name, p.second.name): (p.kind, p.leak) for p in report.pairs}
    assert kinds[("chelsea.png", "chelsea_copy.png")] == ("exact", False)
    leaks = {frozenset((p.first.name, p.second.name)) for p in report.leaks}
    assert frozenset(("chelsea.png", "chelsea_small.jpg")) in leaks
    assert all("coffee" not in p.first.name + p.second.name for p in report.pairs)
    assert len(report.groups) == 1
    # The train copy stays; the leaked validation copy and the exact copy go.
    assert sorted(report.remove) == sorted([paths["copy"], paths["leak"]])


def test_dhash_separates_different_photos() -> None:
    photos = real_photos()
    hashes = {name: dhash(photo) for name, photo in photos.items()}
    assert len(set(hashes.values())) == len(hashes)


def test_cli_dry_run_by_default_then_apply(tmp_path: Path) -> None:
    paths = build(tmp_path)
    runner = CliRunner()
    dry = runner.invoke(main, ["data", "dedup", str(tmp_path)])
    assert dry.exit_code == 0, dry.output
    assert "LEAK" in dry.output and "would remove 2 files" in dry.output
    assert all(p.exists() for p in paths.values())
    applied = runner.invoke(main, ["data", "dedup", str(tmp_path), "--apply"])
    assert applied.exit_code == 0, applied.output
    assert not paths["copy"].exists() and not paths["leak"].exists()
    assert paths["cat"].exists() and paths["coffee"].exists()
    assert find_duplicates(tmp_path).pairs == []
