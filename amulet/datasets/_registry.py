"""The one registry of datasets a spec, ``load_data``, the CLI and the service can name.

Every place that lists datasets reads it: :func:`amulet.utils.load_data` (which names it accepts and how it
calls each loader), the assessment spec (``dataset.name``), the REST ``GET /datasets/builtin`` and the
dashboard's dataset picker. The built-ins are registered below; an operator adds one with
:func:`register_dataset`, or without touching Amulet through the ``amulet.datasets`` entry-point group of
their own package (the entry point names a :class:`DatasetInfo`), read the first time the registry is.

Example:
    >>> from amulet.datasets import dataset_names, get_dataset
    >>> dataset_names()[:3]
    ['celeba', 'census', 'cifar10']
    >>> get_dataset("census").modality, get_dataset("lfw").modality
    ('tabular', 'tabular')
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from amulet._validation import seed_keyword
from amulet.datasets._base import AmuletDataset
from amulet.datasets._faces import load_celeba, load_lfw, load_utkface
from amulet.datasets._images import load_cifar10, load_cifar100, load_fmnist, load_mnist
from amulet.datasets._sources import DATASET_SOURCES
from amulet.datasets._tabular import load_census, load_compas, load_german
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError

__all__ = [
    "ENTRY_POINT_GROUP",
    "DatasetInfo",
    "dataset_names",
    "datasets",
    "get_dataset",
    "register_dataset",
    "unregister_dataset",
]

logger = logging.getLogger("amulet.datasets")

#: Entry-point group through which installed packages add datasets (each entry point names a DatasetInfo).
ENTRY_POINT_GROUP = "amulet.datasets"


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset that can be named.

    Attributes:
        name: Key used in specs and by :func:`amulet.utils.load_data` (lower case).
        modality: ``"tabular"``, ``"image"`` or ``"text"``: the kind of ``x`` the loader returns (attacks that
            cannot apply to a modality say so), which is also what the service shows.
        description: One line for catalogs (what the data is, which columns are sensitive).
        loader: ``loader(path, **keywords) -> AmuletDataset``; ``path`` is the dataset's local folder.
        seed: The loader's keyword for the seed of its train/test split (``"seed"`` in new code; built-ins keep
            upstream's ``"random_seed"``); ``None`` for a dataset with a fixed, official split.
        options: Keyword of :func:`amulet.utils.load_data` -> the loader's keyword it is passed as (e.g.
            ``{"celeba_target": "target_attribute"}``).
        source: ``"builtin"``, ``"python"`` (registered at run time) or ``"entry point <value>"``.
    """

    name: str
    modality: Literal["tabular", "image", "text"]
    description: str
    loader: Callable[..., AmuletDataset]
    seed: str | None = "seed"
    options: Mapping[str, str] = field(default_factory=dict)
    source: str = "python"

    def load(self, path: Path | str, *, seed: int = 0, download: bool = False, **options: Any) -> AmuletDataset:
        """Call the loader on ``path`` with the split ``seed`` (under its own keyword) and ``options``.

        Args:
            path: The dataset's local folder.
            seed: Seed of the train/test split; ignored by a dataset with a fixed split (``seed=None``).
            download: Allow the canonical download (passed only to loaders that can download).
            **options: :func:`amulet.utils.load_data` keywords; those named in :attr:`options` are passed
                under the loader's keyword, the others are ignored.

        Returns:
            The loaded :class:`AmuletDataset`.
        """
        keywords: dict[str, Any] = {self.options[k]: v for k, v in options.items() if k in self.options}
        if self.seed is not None:
            keywords[self.seed] = seed
        if "download" in inspect.signature(self.loader).parameters:
            keywords["download"] = download
        return self.loader(path, **keywords)


_REGISTRY: dict[str, DatasetInfo] = {}
_LOCK = threading.RLock()
_ENTRY_POINTS_LOADED = False


def register_dataset(info: DatasetInfo, *, force: bool = False) -> DatasetInfo:
    """Add a dataset (``info.name`` is stored in lower case) and return its entry.

    Raises:
        InvalidParameterError: ``info`` is not a :class:`DatasetInfo`, its loader is not callable, its
            ``seed`` names no keyword of the loader, or the name is taken and ``force`` is ``False``.
    """
    if not isinstance(info, DatasetInfo):
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name="info", owner="register_dataset", expected="a DatasetInfo", value=info)
        )
    if not callable(info.loader):
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name="loader", owner="register_dataset", expected="a callable", value=info.loader)
        )
    if info.seed is not None and info.seed not in inspect.signature(info.loader).parameters:
        raise InvalidParameterError(
            f"The 'seed' of dataset {info.name!r} names {info.seed!r}, which its loader does not take; "
            f"give the loader's seed keyword ({seed_keyword(info.loader)!r} here) or None for a fixed split."
        )
    key = info.name.strip().lower()
    with _LOCK:
        if key in _REGISTRY and not force:
            raise InvalidParameterError(
                f"Dataset {key!r} is already registered (from {_REGISTRY[key].source}); pass force=True to replace it."
            )
        _REGISTRY[key] = info if key == info.name else DatasetInfo(**{**vars(info), "name": key})
        return _REGISTRY[key]


def unregister_dataset(name: str) -> None:
    """Remove the dataset registered as ``name`` (for tests and notebooks that register one for a while).

    Raises:
        KeyError: no dataset is registered as ``name``.
    """
    with _LOCK:
        del _REGISTRY[name.strip().lower()]


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    with _LOCK:
        if _ENTRY_POINTS_LOADED:
            return
        _ENTRY_POINTS_LOADED = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
                if not isinstance(loaded, DatasetInfo):
                    raise TypeError(f"it is a {type(loaded).__name__}, not a DatasetInfo")
                register_dataset(DatasetInfo(**{**vars(loaded), "source": f"entry point {ep.value}"}))
            except Exception as exc:  # an operator's broken plugin must not hide the other datasets
                logger.warning("dataset entry point %s=%s skipped: %s: %s", ep.name, ep.value, type(exc).__name__, exc)


def datasets() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    _load_entry_points()
    with _LOCK:
        return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def dataset_names() -> list[str]:
    """The names of every registered dataset, sorted."""
    return [d.name for d in datasets()]


def get_dataset(name: str) -> DatasetInfo:
    """The dataset registered as ``name`` (case-insensitive).

    Raises:
        InvalidParameterError: no such dataset; the message lists the known names.
    """
    _load_entry_points()
    key = name.strip().lower() if isinstance(name, str) else name
    with _LOCK:
        if key in _REGISTRY:
            return _REGISTRY[key]
    raise InvalidParameterError(
        PARAM_MESSAGE.format(
            name="dataset", owner="get_dataset", expected="one of {" + ", ".join(dataset_names()) + "}", value=name
        )
    )


def _builtin(name: str, description: str, loader: Callable[..., AmuletDataset], **extra: Any) -> None:
    # The modality is the one the sources table states (what the loader returns), so that the two cannot differ.
    modality: Any = DATASET_SOURCES[name].modality
    register_dataset(DatasetInfo(name, modality, description, loader, source="builtin", **extra))


# Datasets that split a single file take the split seed (upstream's ``random_seed``); the others keep their
# official train/test split (MNIST's offline 5,000-image subset is split with the loader's fixed seed).
_builtin("census", "UCI Adult income (race, sex sensitive)", load_census, seed="random_seed")
_builtin("compas", "ProPublica COMPAS two-year recidivism (race, sex sensitive)", load_compas, seed="random_seed")
_builtin("german", "UCI German credit (personal status and sex, age sensitive)", load_german, seed="random_seed")
_builtin("fmnist", "Fashion-MNIST, 28x28 grey-scale, 10 classes", load_fmnist, seed=None)
_builtin("mnist", "MNIST digits, 28x28 grey-scale, 10 classes", load_mnist, seed=None)
_builtin("cifar10", "CIFAR-10, 32x32 colour, 10 classes", load_cifar10, seed=None)
_builtin("cifar100", "CIFAR-100, 32x32 colour, 100 classes", load_cifar100, seed=None)
_builtin(
    "celeba",
    "CelebA faces (Male sensitive)",
    load_celeba,
    seed="random_seed",
    options={"celeba_target": "target_attribute"},
)
_builtin("lfw", "Labeled Faces in the Wild, as flat vectors (race, gender sensitive)", load_lfw, seed="random_seed")
_builtin("utkface", "UTKFace (gender, race sensitive)", load_utkface, seed="random_seed")
