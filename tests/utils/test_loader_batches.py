"""loader_batches: a DataLoader over tensors read by indexing gives the loader's own batches and random draws."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from amulet.utils._training import loader_batches, train_classifier


def _pass(
    loader, generator, stop: int | None, fast: bool
) -> tuple[list[list[torch.Tensor]], torch.Tensor, torch.Tensor]:
    """The batches of one pass (stopped after ``stop`` batches), then one draw from the loader's and the global RNG."""
    torch.manual_seed(11)
    if generator is not None:
        generator.manual_seed(5)
    batches = []
    for i, batch in enumerate(loader_batches(loader) if fast else loader):
        batches.append(list(batch))
        if stop is not None and i + 1 >= stop:
            break
    after = torch.rand(1, generator=generator) if generator is not None else torch.zeros(1)
    return batches, after, torch.rand(1)


@pytest.mark.parametrize(
    "n, batch_size, drop_last", [(100, 16, False), (96, 16, False), (100, 16, True), (5, 8, False)]
)
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("stop", [None, 1, 6])
def test_same_batches_and_draws_as_iterating_the_loader(n, batch_size, drop_last, shuffle, seeded, stop) -> None:
    x, y, z = torch.randn(n, 3), torch.arange(n), torch.randint(0, 2, (n, 2))
    generator = torch.Generator() if seeded else None
    loader = DataLoader(TensorDataset(x, y, z), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
    for _ in range(2):  # two passes: the second starts from the state the first left
        slow, fast = _pass(loader, generator, stop, False), _pass(loader, generator, stop, True)
        assert len(slow[0]) == len(fast[0]) > 0
        for a, b in zip(slow[0], fast[0]):
            assert len(a) == len(b) == 3
            for s, f in zip(a, b):
                assert s.dtype == f.dtype and torch.equal(s, f)
        assert torch.equal(slow[1], fast[1]) and torch.equal(slow[2], fast[2])


class _Rows(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((2,), float(i)), i % 2


def test_other_loaders_are_iterated_as_they_are() -> None:
    loader = DataLoader(_Rows(10), batch_size=4)
    assert [b[1].tolist() for b in loader_batches(loader)] == [[0, 1, 0, 1], [0, 1, 0, 1], [0, 1]]
    custom = DataLoader(TensorDataset(torch.arange(6.0)), batch_size=3, collate_fn=lambda rows: len(rows))
    assert list(loader_batches(custom)) == [3, 3]
    assert list(loader_batches([[1, 2], [3]])) == [[1, 2], [3]]


def test_train_classifier_trains_the_same_model_as_on_the_loader_itself(monkeypatch) -> None:
    x, y = torch.rand(300, 6), torch.randint(0, 2, (300,))

    def train() -> torch.nn.Module:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        return train_classifier(model, loader, torch.nn.CrossEntropyLoss(), optimizer, 3, "cpu")

    fast = train()
    monkeypatch.setattr("amulet.utils._training.loader_batches", lambda loader: iter(loader))
    slow = train()
    for a, b in zip(fast.parameters(), slow.parameters()):
        assert torch.equal(a, b)


def test_a_tensor_dataset_is_indexed_not_read_row_by_row(monkeypatch) -> None:
    def refuse(self, index):
        raise AssertionError("row-by-row read")

    monkeypatch.setattr(TensorDataset, "__getitem__", refuse)
    loader = DataLoader(TensorDataset(torch.arange(10.0), torch.arange(10)), batch_size=4, shuffle=True)
    assert sorted(torch.cat([b[1] for b in loader_batches(loader)]).tolist()) == list(range(10))
    with pytest.raises(AssertionError, match="row-by-row"):
        next(iter(loader))
