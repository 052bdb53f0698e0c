"""Helpers of the upstream-compatibility suite: loaders and a target model built the way upstream Amulet
0.6.0's documented examples build them (plain ``DataLoader``s over ``data.train_set``, ``initialize_model``
+ ``train_classifier`` with Adam 1e-3 and cross-entropy).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from amulet.utils import initialize_model, train_classifier

#: Upstream's examples train on "cuda" when present; the suite pins the CPU so results do not depend on it.
DEVICE = "cpu"
BATCH_SIZE = 128


def loader(dataset, batch_size: int = BATCH_SIZE, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle)


def sensitive_loader(x, y, z, batch_size: int = BATCH_SIZE) -> DataLoader:
    """The (x, y, z) loader upstream's fairness examples build from the numpy arrays."""
    dataset = TensorDataset(
        torch.from_numpy(x).type(torch.float),
        torch.from_numpy(y).type(torch.long),
        torch.from_numpy(z).type(torch.float),
    )
    return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=False)


def train_upstream_style(data, arch: str = "linearnet", epochs: int = 2, **kwargs) -> torch.nn.Module:
    """A target model trained as upstream's pipelines train one: Adam 1e-3, cross-entropy, ``train_classifier``."""
    torch.manual_seed(0)
    model = initialize_model(arch, "m1", data.num_features, data.num_classes, **kwargs).to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    return train_classifier(model, loader(data.train_set, shuffle=True), criterion, optimizer, epochs, DEVICE)
