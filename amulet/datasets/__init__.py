"""Built-in and user-supplied datasets (upstream ``amulet.datasets`` names, plus our additions).

Every built-in loader resolves its files in the order of docs/datasets.md: the local cache (its ``path``
argument, then ``<settings data dir>/<name>``), an offline source inside an installed package, the
canonical download (only with ``download=True``), otherwise
:class:`~amulet.exceptions.DatasetUnavailableError` naming the install command. The source used is logged.

Images come back as NCHW float32 in [0, 1] (the training split of cifar10/cifar100/fmnist/mnist augmented as
upstream when read: :func:`default_train_transform`); the built-in tables as upstream encodes census: numeric
columns min-max scaled into [0, 1] (fitted on the training split only), then one-hot blocks without their
first category, ``x_*`` float64 arrays and float32 tensors; labels int64; sensitive attributes in ``z``,
coded as upstream codes them (see each loader).

The dataset registry (:func:`datasets`, :func:`get_dataset`, :func:`register_dataset`) is the one list of the
datasets that can be named: ``load_data``, assessment specs, the CLI and the service read it.
"""

from amulet.datasets._base import AmuletDataset, CustomImageDataset, TransformedTensorDataset
from amulet.datasets._faces import load_celeba, load_lfw, load_utkface
from amulet.datasets._files import load_npz, load_tabular_file
from amulet.datasets._images import default_train_transform, load_cifar10, load_cifar100, load_fmnist, load_mnist
from amulet.datasets._registry import (
    DatasetInfo,
    dataset_names,
    datasets,
    get_dataset,
    register_dataset,
    unregister_dataset,
)
from amulet.datasets._sources import DATASET_SOURCES, dataset_status
from amulet.datasets._tabular import load_census, load_compas, load_german

__all__ = [
    "AmuletDataset",
    "CustomImageDataset",
    "DATASET_SOURCES",
    "DatasetInfo",
    "TransformedTensorDataset",
    "dataset_names",
    "dataset_status",
    "datasets",
    "default_train_transform",
    "get_dataset",
    "load_celeba",
    "load_census",
    "load_cifar10",
    "load_cifar100",
    "load_compas",
    "load_fmnist",
    "load_german",
    "load_lfw",
    "load_mnist",
    "load_npz",
    "load_tabular_file",
    "load_utkface",
    "register_dataset",
    "unregister_dataset",
]
