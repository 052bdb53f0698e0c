"""TensorData.from_dataset: the same rows whether the dataset is read by indexing its tensors or item by item."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from amulet.utils import TensorData


class _ItemByItem(Dataset):
    """A plain map-style dataset over the same tensors (read through a loader, one item at a time)."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[i] for t in self.tensors)


@pytest.mark.parametrize("with_z", [False, True])
@pytest.mark.parametrize("nesting", ["plain", "subset", "subset-of-subset"])
def test_from_dataset_reads_tensor_datasets_as_a_loader_would(seed: int, with_z: bool, nesting: str) -> None:
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(50, 4, generator=g), torch.randint(0, 3, (50,), generator=g).int()]
    if with_z:
        tensors.append(torch.randint(0, 2, (50,), generator=g))
    fast: Dataset = TensorDataset(*tensors)
    slow: Dataset = _ItemByItem(*tensors)
    if nesting != "plain":
        outer = torch.randperm(50, generator=g)[:30].tolist()
        fast, slow = Subset(fast, outer), Subset(slow, outer)
    if nesting == "subset-of-subset":
        inner = [5, 0, 29, 7, 7, 12]
        fast, slow = Subset(fast, inner), Subset(slow, inner)
    a, b = TensorData.from_dataset(fast), TensorData.from_dataset(slow)
    assert torch.equal(a.x, b.x) and a.x.dtype == b.x.dtype == torch.float32
    assert torch.equal(a.y, b.y) and a.y.dtype == b.y.dtype == torch.long
    if with_z:
        assert a.z is not None and b.z is not None
        assert torch.equal(a.z, b.z) and a.z.shape == (len(a.x), 1)
    else:
        assert a.z is None and b.z is None
