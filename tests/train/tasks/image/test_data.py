"""Image folders: layouts, formats, EXIF, a reproducible split, and bad data reported not fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.engine.loop import fit
from onyx.train.tasks.image.augment import build_augment
from onyx.train.tasks.image.data import ImageFolderDataset, load_split, load_split_file, save_split
from onyx.train.tasks.image.preprocessing import image_preprocessing
from onyx.train.tasks.registry import task_for
from tests.train.conftest import write_shapes


def spec(grayscale: bool = False, size: int = 16) -> pb.ImagePreprocessing:
    config = ImageTrainConfig(
        data=".", image_size=size, color_mode="grayscale" if grayscale else "rgb"
    )
    return image_preprocessing(config)


def test_every_common_format_loads(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    folder = tmp_path / "a"
    folder.mkdir()
    for suffix in (".jpg", ".png", ".bmp", ".webp"):
        Image.fromarray(rgb).save(folder / f"x{suffix}")
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(rgb[:, :, 0]).save(folder / "gray.png")  # grayscale source
    write_shapes(tmp_path, 2, classes=("b",))
    split = load_split(tmp_path, 0.2, 0)
    assert len(split.train) + len(split.val) == 8 and not split.skipped
    for grayscale in (False, True):
        dataset = ImageFolderDataset(split.train + split.val, spec(grayscale))
        shapes = {tuple(dataset[i][0].shape) for i in range(len(dataset))}
        assert shapes == {(1 if grayscale else 3, 16, 16)}


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))  # wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: tall
    (tmp_path / "a").mkdir()
    image.save(tmp_path / "a" / "rotated.jpg", exif=exif)
    config = ImageTrainConfig(data=".", image_size=16, resize_shorter=16)
    tall = image_preprocessing(config)
    tall.crop_height, tall.crop_width = 32, 16
    array, _ = ImageFolderDataset(load_split_from(tmp_path), tall)[0]
    assert array.shape == (3, 32, 16)


def load_split_from(root: Path) -> list:  # type: ignore[type-arg]
    from onyx.train.tasks.image.data import Sample

    return [Sample(path, 0) for path in sorted((root / "a").iterdir())]


def test_split_is_stratified_reproducible_and_saved(tmp_path: Path) -> None:
    data = write_shapes(tmp_path / "data", 10)
    first = load_split(data, 0.2, seed=3)
    assert load_split(data, 0.2, seed=3) == first
    assert load_split(data, 0.2, seed=4).val != first.val
    assert [sum(s.label == c for s in first.val) for c in range(3)] == [2, 2, 2]
    save_split(first, tmp_path / "split.json")
    again = load_split_file(tmp_path / "split.json")
    assert (again.labels, again.train, again.val) == (first.labels, first.train, first.val)


def test_presplit_layout_with_test_folder(tmp_path: Path) -> None:
    for part, count in (("train", 4), ("val", 2), ("test", 3)):
        write_shapes(tmp_path / part, count, classes=("cat", "dog"))
    split = load_split(tmp_path, 0.2, 0)
    assert split.labels == ["cat", "dog"]
    assert (len(split.train), len(split.val), len(split.test)) == (8, 4, 6)


def test_corrupt_and_non_image_files_are_reported_and_skipped(tmp_path: Path) -> None:
    data = write_shapes(tmp_path / "data", 8, classes=("cat", "dog"))
    (data / "cat" / "truncated.png").write_bytes((data / "cat" / "cat_000.png").read_bytes()[:60])
    (data / "dog" / "not_really.jpg").write_text("this is text, not a JPEG")
    (data / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    split = load_split(data, 0.25, 0)
    skipped = sorted(p.name for p, _ in split.skipped)
    assert skipped == ["not_really.jpg", "truncated.png"]
    assert len(split.train) + len(split.val) == 16
    result = fit(
        task_for(
            ImageTrainConfig(
                data=str(data),
                out_dir=str(tmp_path / "run"),
                epochs=1,
                image_size=16,
                batch_size=8,
                augment=AugmentConfig.off(),
            )
        )
    )
    assert len(result.history) == 1  # trained through without meeting the broken files


def test_empty_class_folder_is_a_clear_error(tmp_path: Path) -> None:
    data = write_shapes(tmp_path, 4, classes=("cat",))
    (data / "dog").mkdir()
    with pytest.raises(ValueError, match="dog: class folder has no readable images"):
        load_split(data, 0.2, 0)


def test_one_class_only_is_a_clear_error(tmp_path: Path) -> None:
    data = write_shapes(tmp_path, 4, classes=("cat",))
    with pytest.raises(ValueError, match="need at least 2 class folders"):
        load_split(data, 0.2, 0)


def test_too_few_images_to_split_is_a_clear_error(tmp_path: Path) -> None:
    data = write_shapes(tmp_path, 1, classes=("cat", "dog"))
    with pytest.raises(ValueError, match="too few to split"):
        load_split(data, 0.2, 0)


def test_augmentation_keeps_the_serving_normalisation(tmp_path: Path) -> None:
    data = write_shapes(tmp_path, 2, classes=("a", "b"), size=48)
    samples = load_split(data, 0.5, 0).train
    serving = spec(size=32)
    plain = ImageFolderDataset(samples, serving)
    # All augmentation off but the geometry: identical to the serving transform.
    off = ImageFolderDataset(samples, serving, build_augment(AugmentConfig.off(), serving))
    assert torch.allclose(plain[0][0], off[0][0], atol=1e-6)
    torch.manual_seed(0)
    on = ImageFolderDataset(samples, serving, build_augment(AugmentConfig(), serving))
    augmented = on[0][0]
    assert augmented.shape == plain[0][0].shape and not torch.allclose(augmented, plain[0][0])
    assert float(augmented.min()) >= -1.0 - 1e-6 and float(augmented.max()) <= 1.0 + 1e-6


def test_a_file_broken_after_the_scan_does_not_end_the_epoch(tmp_path: Path) -> None:
    data = write_shapes(tmp_path, 3, classes=("a", "b"))
    split = load_split(data, 0.4, 0)
    dataset = ImageFolderDataset(split.train, spec())
    split.train[0].path.write_bytes(b"gone bad")
    first, label = dataset[0]
    assert first.shape == (3, 16, 16) and label == split.train[1].label
