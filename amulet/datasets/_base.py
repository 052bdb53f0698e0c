"""The dataset container returned by every loader, and the small dataset classes it holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from amulet.exceptions import InvalidParameterError

__all__ = ["AmuletDataset", "CustomImageDataset", "TransformedTensorDataset"]


@dataclass
class AmuletDataset:
    """A loaded dataset: torch datasets for training plus aligned NumPy arrays.

    The first twelve fields are upstream Amulet 0.6.0's, in its order; the trailing keyword-only fields
    are additions (provenance and preprocessing records).

    Attributes:
        train_set: Training data; a ``TensorDataset`` of ``(x, y)`` (images NCHW float32 in [0, 1]).
        test_set: Test data, same form as ``train_set``.
        num_features: Input size (features for tabular data, ``H * W`` for images as upstream).
        num_classes: Number of label classes.
        modality: ``"image"``, ``"tabular"`` or ``"text"``.
        sensitive_columns: Names of the columns of ``z_train``/``z_test`` (``None`` when there are none).
        x_train: Training inputs, rows aligned with ``train_set`` (float32), or ``None``.
        x_test: Test inputs, or ``None``.
        y_train: Training labels (int64), or ``None``.
        y_test: Test labels (int64), or ``None``.
        z_train: Binary sensitive attributes of the training rows, shape ``(n, len(sensitive_columns))``.
        z_test: Binary sensitive attributes of the test rows.
        name: Dataset name (keyword-only addition).
        source: Where the data was read from (keyword-only addition).
        feature_names: Names of the columns of ``x`` for tabular data (keyword-only addition).
        preprocessing: Description of the encoding and scaling applied, fitted on the training split only
            (keyword-only addition).
        index_train: Row positions of the training rows in the raw source table (keyword-only addition).
        index_test: Row positions of the test rows in the raw source table (keyword-only addition).
    """

    train_set: Dataset
    test_set: Dataset
    num_features: int
    num_classes: int
    modality: Literal["image", "tabular", "text"]
    sensitive_columns: list[str] | None = None
    x_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    z_train: np.ndarray | None = None
    z_test: np.ndarray | None = None
    name: str | None = field(default=None, kw_only=True)
    source: str | None = field(default=None, kw_only=True)
    feature_names: list[str] | None = field(default=None, kw_only=True)
    preprocessing: dict[str, Any] | None = field(default=None, kw_only=True)
    index_train: np.ndarray | None = field(default=None, kw_only=True)
    index_test: np.ndarray | None = field(default=None, kw_only=True)


class TransformedTensorDataset(Dataset):
    """A ``TensorDataset`` whose inputs pass through a transform when an item is read.

    Args:
        x: Inputs (n, ...).
        y: Labels (n,).
        transform: Callable applied to each input tensor (e.g. a torchvision transform), or ``None``.

    Attributes:
        tensors: ``(x, y)`` as stored (before the transform), like ``TensorDataset.tensors``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable[[torch.Tensor], Any] | None = None):
        self.tensors = (x, y)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        x, y = self.tensors[0][index], self.tensors[1][index]
        if self.transform is not None:
            x = self.transform(x)
        return x, y


def make_tensor_dataset(
    x: np.ndarray, y: np.ndarray, transform: Callable[[torch.Tensor], Any] | None = None
) -> Dataset:
    """Wrap aligned arrays as a ``TensorDataset`` (sharing memory) or a :class:`TransformedTensorDataset`."""
    x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    y_t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    if transform is None:
        return TensorDataset(x_t, y_t)
    return TransformedTensorDataset(x_t, y_t, transform)


class CustomImageDataset(Dataset):
    """A folder of images with a CSV of labels (upstream ``amulet.datasets.CustomImageDataset``).

    Args:
        labels_file: CSV whose rows are ``(image file name, integer label)``; the first line is a header.
        img_dir: Directory holding the images.
        transform: Callable applied to each image. Without one, images are returned as float32
            ``(3, H, W)`` tensors in [0, 1]; with one, it receives the ``uint8`` ``(3, H, W)`` tensor and
            its output is cast to float (upstream behaviour).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (4, 3), (255, 0, 0)).save(d / "a.png")
        >>> _ = (d / "labels.csv").write_text("file,label\\na.png,1\\n")
        >>> image, label = CustomImageDataset(d / "labels.csv", d)[0]
        >>> tuple(image.shape), float(image.max()), label
        ((3, 3, 4), 1.0, 1)
    """

    def __init__(self, labels_file: Path | str, img_dir: Path | str, transform: Callable | None = None):
        self.labels_file = labels_file
        self.img_dir = img_dir
        self.transform = transform

    def _labels(self) -> Any:
        labels = self.__dict__.get("_img_labels")
        if labels is None:
            import pandas as pd

            labels = pd.read_csv(self.labels_file)
            if labels.shape[1] != 2:
                raise InvalidParameterError(
                    f"The 'labels_file' parameter of CustomImageDataset must be a CSV with 2 columns (image file, "
                    f"label). Got {labels.shape[1]} columns in {str(self.labels_file)!r} instead."
                )
            self.__dict__["_img_labels"] = labels
        return labels

    def __len__(self) -> int:
        return len(self._labels())

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        from torchvision.io import ImageReadMode, decode_image

        labels = self._labels()
        img_path = Path(self.img_dir) / str(labels.iloc[idx, 0])
        image = decode_image(str(img_path), mode=ImageReadMode.RGB)
        label = int(labels.iloc[idx, 1])
        if self.transform is not None:
            return self.transform(image).type(torch.float), label
        return image.float().div_(255.0), label
