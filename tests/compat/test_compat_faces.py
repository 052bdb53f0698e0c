"""LFW and UTKFace through ``load_data`` from upstream Amulet 0.6.0's on-disk layout, with upstream's codings.

No package ships these datasets, so the files are generated in the exact format upstream's loaders leave in
``<root>/data/<name>``: for LFW the processed attribute file (PubFig header, tab-separated) next to
``lfw_images.npz``; for UTKFace the ``UTKFace/{age}_{gender}_{race}_{date}.jpg.chip.jpg`` images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from amulet.utils import load_data

LFW_COLUMNS = ["person", "imagenum", "Male", "Asian", "White", "Black", "Baby", "Child", "Youth", "Middle Aged"]


def _write_lfw(folder: Path, n: int) -> np.ndarray:
    """``n`` people: even rows White, odd rows Black; rows 0, 1 of every 4 male; every third row a Baby, the
    others Middle Aged. Returns the images (N, 62, 47, 3)."""
    folder.mkdir(parents=True)
    lines = ["\t".join([*LFW_COLUMNS, "Senior"])]
    for i in range(n):
        white, black = (1.0, -1.0) if i % 2 == 0 else (-1.0, 1.0)
        male = 1.0 if i % 4 < 2 else -1.0
        ages = [-2.0] * 5
        ages[0 if i % 3 == 0 else 3] = 0.5
        row = [f"Person_{i}", 1, male, -2.0, white, black, *ages]
        lines.append("\t".join(str(v) for v in row))
    (folder / "lfw_attributes.txt").write_text("\n".join(lines) + "\n")
    images = np.random.default_rng(0).integers(0, 256, (n, 62, 47, 3), dtype=np.uint8)
    np.savez(folder / "lfw_images.npz", images)
    return images


def test_lfw_codings_are_upstreams(tmp_path: Path) -> None:
    n = 40
    _write_lfw(tmp_path / "data" / "lfw", n)
    data = load_data(tmp_path, "lfw")
    assert data.sensitive_columns == ["race", "gender"]
    assert data.num_features == 8742 and data.num_classes == 2
    index = np.concatenate([data.index_train, data.index_test])
    assert sorted(index) == list(range(n))
    z = np.concatenate([data.z_train, data.z_test])
    y = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_array_equal(z[:, 0], index % 2)  # race: 0 = White, 1 = Black
    np.testing.assert_array_equal(z[:, 1], (index % 4 < 2).astype(int))  # gender: 1 = male
    np.testing.assert_array_equal(y, (index % 3 != 0).astype(int))  # age target: Middle Aged -> 1, Baby -> 0
    assert len(data.test_set) == len(data.y_test) == round(0.3 * n)  # upstream's test_size 0.3


def test_utkface_codings_are_upstreams(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "utkface" / "UTKFace"
    folder.mkdir(parents=True)
    specs = [(10 + 3 * i, i % 2, i % 5) for i in range(20)]
    for i, (age, gender, race) in enumerate(specs):
        Image.new("RGB", (64, 64), (i * 10, 0, 0)).save(folder / f"{age}_{gender}_{race}_2017011{i:04d}.jpg.chip.jpg")
    data = load_data(tmp_path, "utkface")
    assert data.sensitive_columns == ["gender", "race"]
    y = np.concatenate([data.y_train, data.y_test])
    z = np.concatenate([data.z_train, data.z_test])
    # raw codes of the file names: the age in years is the class, gender 0 = male, race 0-4
    assert sorted(y.tolist()) == sorted(a for a, _, _ in specs)
    assert data.num_classes == max(a for a, _, _ in specs) + 1
    assert sorted(z[:, 0].tolist()) == sorted(g for _, g, _ in specs)
    assert set(z[:, 1].tolist()) == {0, 1, 2, 3, 4}
    by_age = dict(zip(y.tolist(), z.tolist(), strict=True))
    for age, gender, race in specs:
        assert by_age[age] == [gender, race]
