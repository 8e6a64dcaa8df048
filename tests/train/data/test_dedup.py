"""`onyx data dedup`: exact and near duplicates, leakage across splits, dry run vs --apply."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance

from onyx.cli import main
from onyx.train.data.dedup import dhash, find_duplicates
from tests.train.photos import real_photos, write_photo_crops


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
    assert dry.exit_code == 1, dry.output  # leakage found: a script can gate on it
    assert "LEAK" in dry.output and "would remove 2 files" in dry.output
    assert all(p.exists() for p in paths.values())
    applied = runner.invoke(main, ["data", "dedup", str(tmp_path), "--apply"])
    assert applied.exit_code == 0, applied.output  # the leak is gone
    assert not paths["copy"].exists() and not paths["leak"].exists()
    assert paths["cat"].exists() and paths["coffee"].exists()
    assert find_duplicates(tmp_path).pairs == []


def save(image: Image.Image, path: Path, **options: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def horse_and_sky() -> tuple[Image.Image, Image.Image]:
    """A crop inside skimage's black horse silhouette and a dark-sky crop of its rocket photo:
    their dHashes differ in 1 bit of 64."""
    from skimage import data

    horse = Image.fromarray(np.where(data.horse(), 255, 0).astype(np.uint8)).convert("RGB")
    return horse.crop((160, 96, 240, 176)), Image.fromarray(data.rocket()).crop((440, 0, 640, 200))


def test_a_black_silhouette_is_not_a_dark_sky(tmp_path: Path) -> None:
    black, sky = horse_and_sky()
    assert bin(dhash(black) ^ dhash(sky)).count("1") <= 4  # the hash alone would say "same"
    save(black, tmp_path / "train" / "horse" / "black.png")
    save(sky, tmp_path / "val" / "rocket" / "sky.png")
    report = find_duplicates(tmp_path)
    assert report.pairs == [] and not report.failed
    result = CliRunner().invoke(main, ["data", "dedup", str(tmp_path), "--check"])
    assert result.exit_code == 0, result.output


def test_crops_of_opposite_halves_are_not_duplicates(tmp_path: Path) -> None:
    rocket = real_photos()["rocket"]
    left, right = rocket.crop((180, 40, 300, 160)), rocket.crop((320, 40, 440, 160))
    assert bin(dhash(left) ^ dhash(right)).count("1") <= 4
    save(left, tmp_path / "train" / "rocket" / "left.png")
    save(right, tmp_path / "val" / "rocket" / "right.png")
    report = find_duplicates(tmp_path)
    assert report.leaks == [] and report.remove == []
    assert all(p.kind == "unconfirmed" for p in report.pairs)


def test_the_photo_transfer_set_has_no_leaks(tmp_path: Path) -> None:
    """Crops from disjoint halves of each photo: the perceptual hash alone reported leaks."""
    root = write_photo_crops(tmp_path, train=30, val=15, size=64, seed=0)
    report = find_duplicates(root)
    assert report.leaks == [] and report.conflicts == []
    assert report.files == 8 * 45


@pytest.mark.parametrize(
    ("name", "scale", "quality", "brightness"),
    [("hopper", 0.6, 70, 1.0), ("china", 0.3, 85, 0.92), ("flower", 1.5, 90, 1.05)],
)
def test_a_real_copy_is_a_duplicate(
    tmp_path: Path, name: str, scale: float, quality: int, brightness: float
) -> None:
    photo = real_photos()[name]
    size = (int(photo.width * scale), int(photo.height * scale))
    copy = ImageEnhance.Brightness(photo.resize(size, Image.Resampling.BICUBIC)).enhance(brightness)
    save(photo, tmp_path / "train" / "x" / "photo.png")
    save(copy, tmp_path / "val" / "x" / "copy.jpg", quality=quality)
    (pair,) = find_duplicates(tmp_path).pairs
    assert pair.kind == "near" and pair.leak and not pair.conflict
    assert pair.correlation > 0.95


def test_the_same_image_under_two_labels_is_a_conflict(tmp_path: Path) -> None:
    photos = real_photos()
    first = save(photos["coffee"], tmp_path / "train" / "cup" / "coffee.png")
    second = save(photos["coffee"], tmp_path / "train" / "other" / "coffee.jpg", quality=95)
    save(photos["cat"], tmp_path / "train" / "other" / "cat.png")
    report = find_duplicates(tmp_path)
    (pair,) = report.pairs
    assert pair.conflict and not pair.leak and report.failed
    assert report.remove == []  # which label is right is a human's call
    runner = CliRunner()
    result = runner.invoke(main, ["data", "dedup", str(tmp_path), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["conflicts"] == 1 and document["leaks"] == 0
    assert document["pairs"][0]["conflict"] is True
    applied = runner.invoke(main, ["data", "dedup", str(tmp_path), "--apply"])
    assert applied.exit_code == 1 and first.exists() and second.exists()


def test_check_prints_one_line_and_refuses_apply(tmp_path: Path) -> None:
    build(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["data", "dedup", str(tmp_path), "--check"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "2 pairs straddle splits" in result.output
    refused = runner.invoke(main, ["data", "dedup", str(tmp_path), "--check", "--apply"])
    assert refused.exit_code == 2
