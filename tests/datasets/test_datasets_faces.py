"""CelebA, LFW, UTKFace and CustomImageDataset on small generated files in their exact on-disk formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from amulet.datasets import CustomImageDataset, load_celeba, load_lfw, load_utkface
from amulet.exceptions import InvalidParameterError

CELEBA_ATTRS = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
]


def _color(i: int) -> tuple[int, int, int]:
    return (17 * i % 256, 255 - 13 * i % 256, 90 + 7 * i % 160)


@pytest.fixture
def celeba_dir(tmp_path):
    n = 24
    images = tmp_path / "img_align_celeba"
    images.mkdir()
    rng = np.random.default_rng(0)
    values = rng.choice([-1, 1], size=(n, 40))
    values[:, CELEBA_ATTRS.index("Smiling")] = np.where(np.arange(n) % 2 == 0, 1, -1)
    values[:, CELEBA_ATTRS.index("Male")] = np.where(np.arange(n) % 4 < 2, 1, -1)
    lines = [str(n), " ".join(CELEBA_ATTRS)]
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        Image.new("RGB", (178, 218), _color(i)).save(images / name, quality=95)
        lines.append(name + " " + " ".join(f"{v:2d}" for v in values[i]))  # the file pads 1 to ' 1'
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, values


def test_celeba_reads_attribute_file_and_aligned_images(celeba_dir):
    path, values = celeba_dir
    data = load_celeba(path, random_seed=0, test_size=0.5, image_size=16)
    assert data.x_train.shape == (12, 3, 16, 16) and data.x_test.shape == (12, 3, 16, 16)
    assert data.sensitive_columns == ["Male"] and data.num_classes == 2 and data.modality == "image"
    for x, y, z, index in ((data.x_train, data.y_train, data.z_train, data.index_train),
                           (data.x_test, data.y_test, data.z_test, data.index_test)):  # fmt: skip
        np.testing.assert_array_equal(y, values[index, CELEBA_ATTRS.index("Smiling")] > 0)
        np.testing.assert_array_equal(z[:, 0], values[index, CELEBA_ATTRS.index("Male")] > 0)
        for row, i in enumerate(index):  # each image is a flat colour: its pixels survive crop+resize
            np.testing.assert_allclose(x[row].mean(axis=(1, 2)) * 255, _color(int(i)), atol=4)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    other = load_celeba(path, target_attribute="Young", image_size=16, max_images=8)
    assert len(other.y_train) + len(other.y_test) == 8
    with pytest.raises(InvalidParameterError, match="'target_attribute' parameter of load_celeba"):
        load_celeba(path, target_attribute="Tall", image_size=16)


LFW_COLUMNS = [
    "person",
    "imagenum",
    "Male",
    "Asian",
    "White",
    "Black",
    "Baby",
    "Child",
    "Youth",
    "Middle Aged",
    "Senior",
]


def _lfw_rows(n: int, rng: np.random.Generator) -> list[list]:
    rows = []
    for i in range(n):
        scores = rng.normal(0, 1, 9)
        scores[2:4] = [1.0, -1.0] if i % 2 == 0 else [-1.0, 1.0]  # White vs Black, always defined
        scores[4:9] = -2.0
        scores[4 + (0 if i % 3 == 0 else 3)] = 0.5  # Baby (young) or Middle Aged (old)
        scores[0] = 1.0 if i % 4 < 2 else -1.0
        rows.append([f"Person {i % 5}", i // 5 + 1, *scores.round(4)])
    rows[-1][4:6] = [-0.5, -0.6]  # race undefined (best score < -0.1): dropped
    return rows


def _write_lfw_attributes(path: Path, rows: list[list]) -> None:
    lines = ["# LFW attributes (generated)", "#\t" + "\t".join(LFW_COLUMNS)]
    lines += ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("layout", ["npz", "funneled"])
def test_lfw_reads_attributes_and_either_image_layout(tmp_path, layout):
    rng = np.random.default_rng(1)
    rows = _lfw_rows(30, rng)
    _write_lfw_attributes(tmp_path / "lfw_attributes.txt", rows)
    if layout == "npz":
        images = rng.integers(0, 256, (len(rows), 62, 47, 3), dtype=np.uint8)
        np.savez(tmp_path / "lfw_images.npz", images)
    else:
        for i, row in enumerate(rows):
            name = row[0].replace(" ", "_")
            folder = tmp_path / "lfw_home" / "lfw_funneled" / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (250, 250), _color(i)).save(folder / f"{name}_{row[1]:04d}.jpg", quality=95)
    data = load_lfw(tmp_path, test_size=0.3, random_seed=7)
    kept = np.arange(len(rows) - 1)  # the last row's race is undefined
    assert len(data.y_train) + len(data.y_test) == len(kept)
    # upstream's names and codings: the column stays "gender" (not "sex"), race 0 = White, 1 = Black
    assert data.x_train.shape[1] == data.num_features == 8742 and data.sensitive_columns == ["race", "gender"]
    assert data.x_train.dtype == np.float32
    # upstream's plain seeded split, in its order: the same rows, row for row, as upstream's train_test_split
    upstream_train, upstream_test = train_test_split(np.arange(len(kept)), test_size=0.3, random_state=7)
    np.testing.assert_array_equal(data.index_train, upstream_train)
    np.testing.assert_array_equal(data.index_test, upstream_test)
    for x, y, z, index in ((data.x_train, data.y_train, data.z_train, data.index_train),
                           (data.x_test, data.y_test, data.z_test, data.index_test)):  # fmt: skip
        src = kept[index]
        np.testing.assert_array_equal(y, src % 3 != 0)  # Middle Aged -> old = 1
        np.testing.assert_array_equal(z[:, 0], src % 2 != 0)  # 0 = White, 1 = Black
        np.testing.assert_array_equal(z[:, 1], src % 4 < 2)  # 1 = male
        chw = x.reshape(-1, 3, 62, 47)
        if layout == "npz":
            np.testing.assert_allclose(chw * 255, images[src].transpose(0, 3, 1, 2), atol=1e-3)
        else:
            np.testing.assert_allclose(chw.mean(axis=(2, 3)) * 255, [_color(int(i)) for i in src], atol=4)
    # age as a sensitive attribute keeps upstream's PubFig class (0 Baby ... 3 Middle Aged ... 4 Senior)
    by_age = load_lfw(tmp_path, target="gender", attribute_1="age", attribute_2="race", random_seed=7)
    assert by_age.sensitive_columns == ["age", "race"]
    src = kept[by_age.index_train]
    np.testing.assert_array_equal(by_age.z_train[:, 0], np.where(src % 3 == 0, 0, 3))
    np.testing.assert_array_equal(by_age.y_train, src % 4 < 2)  # target gender: 1 = male


def _write_utkface(folder: Path, specs: list[tuple[int, int, int]]) -> None:
    folder.mkdir(parents=True)
    for i, (age, gender, race) in enumerate(specs):
        Image.new("RGB", (200, 200), _color(i)).save(folder / f"{age}_{gender}_{race}_2017011{i:04d}.jpg.chip.jpg")


def test_utkface_parses_file_names_and_skips_malformed(tmp_path, caplog):
    specs = [(5 + 7 * i, i % 2, i % 5) for i in range(20)]
    _write_utkface(tmp_path / "UTKFace", specs)
    Image.new("RGB", (200, 200)).save(tmp_path / "UTKFace" / "61_1_20170109142408075.jpg.chip.jpg")  # no race
    data = load_utkface(tmp_path, image_size=8)
    assert "skipped 1 files with malformed names" in caplog.text
    assert data.x_train.shape[1:] == (3, 8, 8) and len(data.y_train) + len(data.y_test) == 20
    assert data.sensitive_columns == ["gender", "race"]
    names = sorted(p.name for p in (tmp_path / "UTKFace").iterdir() if p.name.count("_") >= 3)
    order = [specs[int(n.split("_")[3][7:11])] for n in names]  # spec behind each sorted file
    # upstream's codings: the raw codes of the file names (age in years, gender 0 = male, race 0-4)
    assert data.num_classes == max(a for a, _, _ in specs) + 1
    for y, z, index in ((data.y_train, data.z_train, data.index_train), (data.y_test, data.z_test, data.index_test)):
        np.testing.assert_array_equal(y, [order[i][0] for i in index])
        np.testing.assert_array_equal(z[:, 0], [order[i][1] for i in index])  # 0 = male, 1 = female
        np.testing.assert_array_equal(z[:, 1], [order[i][2] for i in index])  # 0 White ... 4 Others
    assert set(np.concatenate([data.z_train[:, 1], data.z_test[:, 1]])) == {0, 1, 2, 3, 4}
    by_race = load_utkface(tmp_path, target="race", attribute_1="age", attribute_2="gender", image_size=8)
    assert by_race.num_classes == 5 and by_race.sensitive_columns == ["age", "gender"]
    np.testing.assert_array_equal(by_race.z_train[:, 0], [order[i][0] for i in by_race.index_train])
    binned = load_utkface(tmp_path, target="age", age_bins=[20, 40, 60], image_size=8, test_size=0.25)
    assert binned.num_classes == 4 and set(np.concatenate([binned.y_train, binned.y_test])) == {0, 1, 2, 3}
    with pytest.raises(InvalidParameterError, match="'age_bins' parameter of load_utkface"):
        load_utkface(tmp_path, age_bins=[40, 20], image_size=8)
    with pytest.raises(ValueError, match="'test_size' parameter of load_utkface must leave at least 2 rows"):
        load_utkface(tmp_path, test_size=0.95, image_size=8)


def test_custom_image_dataset_reads_pngs_and_labels(tmp_path):
    for i in range(3):
        Image.new("RGB", (5, 4), _color(i)).save(tmp_path / f"img{i}.png")
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"img{i}.png,{i % 2}\n" for i in range(3)))
    dataset = CustomImageDataset(tmp_path / "labels.csv", str(tmp_path))
    assert len(dataset) == 3
    image, label = dataset[2]
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32 and label == 0
    torch.testing.assert_close(image[:, 0, 0] * 255, torch.tensor(_color(2), dtype=torch.float32))
    scaled = CustomImageDataset(tmp_path / "labels.csv", tmp_path, transform=lambda t: t[:, :2, :2])
    assert scaled[1][0].shape == (3, 2, 2) and scaled[1][0].max() > 1  # upstream: transform gets uint8
    (tmp_path / "bad.csv").write_text("file,label,extra\nimg0.png,0,1\n")
    with pytest.raises(InvalidParameterError, match="'labels_file' parameter of CustomImageDataset"):
        len(CustomImageDataset(tmp_path / "bad.csv", tmp_path))
