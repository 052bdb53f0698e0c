"""A dataset held as aligned tensors (features, labels, optional sensitive attributes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["TensorData"]


@dataclass(frozen=True)
class TensorData:
    """Aligned tensors ``x`` (n, ...), ``y`` (n,) long and optional ``z`` (n, n_attributes) long.

    The engine passes data around in this form between training recipes and risks: it is cheap to
    subset, to move to a device and to turn into a loader.
    """

    x: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or (self.z is not None and len(self.z) != len(self.x)):
            raise ValueError(
                f"TensorData needs x, y (and z) of the same length. Got {len(self.x)}, {len(self.y)}"
                + (f", {len(self.z)}" if self.z is not None else "")
                + "."
            )

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> TensorData:
        """Build from NumPy arrays (x as float32, y and z as int64)."""
        return cls(
            torch.as_tensor(np.asarray(x), dtype=torch.float32),
            torch.as_tensor(np.asarray(y), dtype=torch.long).reshape(-1),
            None if z is None else torch.as_tensor(np.asarray(z), dtype=torch.long).reshape(len(x), -1),
        )

    @classmethod
    def from_dataset(cls, dataset: torch.utils.data.Dataset, batch_size: int = 1024) -> TensorData:
        """Materialise any map-style dataset yielding (x, y) or (x, y, z) into tensors.

        A ``TensorDataset`` (or a ``Subset`` of one) is read by indexing its tensors, the same rows as reading
        it item by item through a loader, without a Python call per row.
        """
        tensors = _dataset_tensors(dataset)
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        if tensors is not None:
            xs, ys, zs = [tensors[0]], [tensors[1]], list(tensors[2:3])
        else:
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                xs.append(batch[0])
                ys.append(batch[1])
                if len(batch) > 2:
                    zs.append(batch[2])
        z = torch.cat(zs).long() if zs else None
        if z is not None and z.dim() == 1:
            z = z.unsqueeze(1)
        return cls(torch.cat(xs).float(), torch.cat(ys).long().reshape(-1), z)

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> TensorData:
        """Rows at ``index``, keeping x, y and z aligned."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return TensorData(self.x[idx], self.y[idx], None if self.z is None else self.z[idx])

    def to(self, device: torch.device | str) -> TensorData:
        """Copy to ``device``."""
        return TensorData(self.x.to(device), self.y.to(device), None if self.z is None else self.z.to(device))

    def dataset(self, *, with_z: bool = False) -> TensorDataset:
        """A ``TensorDataset`` of (x, y) or, with ``with_z``, (x, y, z)."""
        if with_z:
            if self.z is None:
                raise ValueError("This TensorData has no sensitive attributes (z); cannot build an (x, y, z) dataset.")
            return TensorDataset(self.x, self.y, self.z)
        return TensorDataset(self.x, self.y)

    def loader(
        self,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        with_z: bool = False,
        drop_last: bool = False,
    ) -> DataLoader:
        """A ``DataLoader``; when shuffling, the order is fixed by ``seed``."""
        generator = None
        if shuffle:
            generator = torch.Generator()
            generator.manual_seed(0 if seed is None else int(seed))
        return DataLoader(
            self.dataset(with_z=with_z),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (max label + 1)."""
        return int(self.y.max().item()) + 1 if len(self.y) else 0


def _dataset_tensors(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, ...] | None:
    """The rows of a ``TensorDataset`` or of a (nested) ``Subset`` of one as whole tensors; else None."""
    index: torch.Tensor | None = None
    while isinstance(dataset, torch.utils.data.Subset):
        own = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        index = own if index is None else own[index]
        dataset = dataset.dataset
    if type(dataset) is not TensorDataset or not 2 <= len(dataset.tensors) <= 3:
        return None
    return tuple(t if index is None else t[index] for t in dataset.tensors)
