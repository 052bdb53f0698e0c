"""Data and models of an assessment: loading the dataset once per process, the per-seed split, the model factory.

The dataset's train split (optionally subsampled) is divided per seed, with a seeded permutation, into the
target's *member* rows and the adversary's rows (disjoint); the test split is held out from both.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from amulet import datasets
from amulet.assess._spec import DatasetSpec, ModelSpec
from amulet.exceptions import ModelSpecError
from amulet.io import inspect_model_file, load_graph_model
from amulet.models import canonical_architecture, create_model, get_architecture
from amulet.settings import get_settings
from amulet.utils import TensorData, derive_seed, load_data, numpy_rng

__all__ = [
    "DataBundle",
    "architecture_spec",
    "clip_range_of",
    "load_bundle",
    "load_graph_template",
    "make_model_factory",
    "split_for_seed",
    "split_indices",
    "tensor_sha256",
]

logger = logging.getLogger(__name__)


def tensor_sha256(*parts: torch.Tensor | None) -> str:
    """SHA-256 over the bytes, dtypes and shapes of tensors (``None`` parts are marked as such)."""
    digest = hashlib.sha256()
    for t in parts:
        if t is None:
            digest.update(b"<none>")
            continue
        arr = t.detach().cpu().contiguous().numpy()
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


@dataclass
class DataBundle:
    """A loaded, subsampled dataset with the tensors the runner needs."""

    dataset: Any  # amulet.datasets.AmuletDataset
    train: TensorData
    test: TensorData
    sha256: str
    modality: str
    input_shape: tuple[int, ...]
    num_classes: int
    clip_range: tuple[float, float] | None


_BUNDLES: dict[str, DataBundle] = {}
_LOCK = threading.Lock()


def _subsample(n: int, size: float | None, seed: int) -> np.ndarray:
    if size is None:
        return np.arange(n)
    keep = n if size == 1 else (math.ceil(size * n) if size < 1 else min(int(size), n))
    return np.sort(numpy_rng(seed).permutation(n)[:keep])


def _call_with_supported(func: Any, *args: Any, **kwargs: Any) -> Any:
    params = inspect.signature(func).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return func(*args, **kwargs)


def _load_dataset(spec: DatasetSpec) -> Any:
    if spec.name is not None:
        return load_data(str(get_settings().resolved_data_dir), spec.name, exp_id=spec.split_seed)
    path = str(spec.path)
    if path.lower().endswith(".npz"):
        return _call_with_supported(datasets.load_npz, path, random_seed=spec.split_seed)
    return _call_with_supported(
        datasets.load_tabular_file, path, label=spec.label, sensitive=list(spec.sensitive), random_seed=spec.split_seed
    )


def _arrays(dataset: Any, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, y, z = (getattr(dataset, f"{k}_{part}", None) for k in "xyz")
    if x is None or y is None:
        data = TensorData.from_dataset(getattr(dataset, f"{part}_set"))
        return data.x.numpy(), data.y.numpy(), None if data.z is None else data.z.numpy()
    return np.asarray(x), np.asarray(y), None if z is None else np.asarray(z)


def load_bundle(spec: DatasetSpec) -> DataBundle:
    """Load (once per process) and subsample the dataset ``spec`` names.

    Raises:
        DatasetUnavailableError, InvalidParameterError, ValueError: from the dataset loaders, naming the fix.
    """
    key = spec.model_dump_json()
    with _LOCK:
        if key in _BUNDLES:
            return _BUNDLES[key]
    dataset = _load_dataset(spec)
    x_tr, y_tr, z_tr = _arrays(dataset, "train")
    x_te, y_te, z_te = _arrays(dataset, "test")
    i_tr = _subsample(len(x_tr), spec.training_size, derive_seed(spec.split_seed, "subsample-train"))
    i_te = _subsample(len(x_te), spec.test_size, derive_seed(spec.split_seed, "subsample-test"))
    train = TensorData.from_numpy(x_tr[i_tr], y_tr[i_tr], None if z_tr is None else z_tr[i_tr])
    test = TensorData.from_numpy(x_te[i_te], y_te[i_te], None if z_te is None else z_te[i_te])
    if len(train) < 4 or len(test) < 2:
        raise ValueError(
            f"The dataset {spec.source!r} has {len(train)} training and {len(test)} test rows after subsampling; "
            "increase 'dataset.training_size'/'dataset.test_size'."
        )
    if dataclasses.is_dataclass(dataset):
        updates: dict[str, Any] = {
            "train_set": TensorDataset(train.x, train.y),
            "test_set": TensorDataset(test.x, test.y),
            "x_train": train.x.numpy(),
            "x_test": test.x.numpy(),
            "y_train": train.y.numpy(),
            "y_test": test.y.numpy(),
        }
        if z_tr is not None and train.z is not None and test.z is not None:
            updates.update(z_train=train.z.numpy(), z_test=test.z.numpy())
        dataset = dataclasses.replace(dataset, **{k: v for k, v in updates.items() if hasattr(dataset, k)})  # type: ignore[type-var]
    modality = str(getattr(dataset, "modality", "image" if train.x.dim() > 2 else "tabular"))
    clip = clip_range_of(train.x, test.x)
    num_classes = int(getattr(dataset, "num_classes", 0) or max(train.num_classes, test.num_classes))
    bundle = DataBundle(
        dataset=dataset,
        train=train,
        test=test,
        sha256=tensor_sha256(train.x, train.y, train.z, test.x, test.y, test.z),
        modality=modality,
        input_shape=tuple(train.x.shape[1:]),
        num_classes=num_classes,
        clip_range=clip,
    )
    logger.info(
        "dataset %s: %d train / %d test rows, sha256 %s", spec.source, len(train), len(test), bundle.sha256[:12]
    )
    with _LOCK:
        _BUNDLES[key] = bundle
    return bundle


def clip_range_of(*parts: torch.Tensor) -> tuple[float, float]:
    """The value range attacks must keep their examples in, derived from the data (train and test).

    Data inside [0, 1] (images, the built-in min-max scaled tabular datasets, uploaded tables, which are
    min-max scaled too) gets (0, 1): the range its features were scaled to, not the subsample's observed
    extremes. Other data (for example an uploaded ``.npz`` table, used as is) gets its observed (min, max),
    so every clean input lies inside the range and a bounded attack never has to move one by more than
    its budget to bring it into range.
    """
    filled = [p for p in parts if p.numel()]
    if not filled:
        return (0.0, 1.0)
    lo = float(min(p.min().item() for p in filled))
    hi = float(max(p.max().item() for p in filled))
    return (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)


def split_indices(bundle: DataBundle, seed: int, member_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (in the train split) of the member and adversary rows for ``seed``: disjoint, seeded,
    stratified by label, together covering the whole train split."""
    rng = numpy_rng(derive_seed(seed, "member-adversary-split"))
    y = bundle.train.y.numpy()
    member: list[np.ndarray] = []
    adversary: list[np.ndarray] = []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = round(member_fraction * len(idx))
        member.append(idx[:cut])
        adversary.append(idx[cut:])
    return np.sort(np.concatenate(member)), np.sort(np.concatenate(adversary))


def split_for_seed(bundle: DataBundle, seed: int, member_fraction: float) -> tuple[TensorData, TensorData]:
    """The (member, adversary) rows of the train split for ``seed`` (see :func:`split_indices`)."""
    m, a = split_indices(bundle, seed, member_fraction)
    return bundle.train.subset(m), bundle.train.subset(a)


#: ``architecture`` of the spec of an uploaded graph (``model.file``).
GRAPH_ARCHITECTURE = "graph"


def architecture_spec(spec: ModelSpec, bundle: DataBundle) -> dict[str, Any]:
    """The architecture spec (name, config, input shape, classes) of the model under assessment.

    For an uploaded graph (``model.file``): ``architecture`` is ``"graph"``, ``config`` holds the file's
    format and SHA-256 (what identifies the architecture and its weights, wherever the file lies), ``file``
    its path; input shape and classes are the dataset's (the pre-flight checks the graph against them).
    """
    if spec.file is not None:
        info = _graph_info(spec.file, inspect_model_file)
        return {
            "architecture": GRAPH_ARCHITECTURE,
            "config": {"format": info.format, "sha256": info.sha256},
            "file": str(spec.file),
            "input_shape": list(bundle.input_shape),
            "num_classes": bundle.num_classes,
        }
    name = canonical_architecture(spec.architecture)
    config: dict[str, Any] = {}
    if spec.capacity is not None:
        config.update(get_architecture(name).capacities.get(spec.capacity, {}))
    config.update(spec.config)
    return {
        "architecture": name,
        "config": config,
        "input_shape": list(bundle.input_shape),
        "num_classes": bundle.num_classes,
    }


_GRAPH_INFO: dict[tuple[str, int, int], Any] = {}
_GRAPH_TEMPLATES: dict[str, nn.Module] = {}


def _graph_info(path: str, inspect_model_file: Any) -> Any:
    """The file's GraphModelInfo, validated once per (path, size, mtime) and process."""
    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key in _GRAPH_INFO:
            return _GRAPH_INFO[key]
    info = inspect_model_file(path)
    with _LOCK:
        _GRAPH_INFO[key] = info
    return info


def load_graph_template(arch: dict[str, Any]) -> nn.Module:
    """The uploaded graph of ``arch`` with its uploaded weights (loaded once per file and process; a copy)."""
    sha = arch["config"]["sha256"]
    with _LOCK:
        template = _GRAPH_TEMPLATES.get(sha)
    if template is None:
        template = load_graph_model(arch["file"])
        if template.info.sha256 != sha:  # type: ignore[union-attr]
            raise ModelSpecError(f"The model file {arch['file']!r} changed during the assessment; run it again.")
        with _LOCK:
            _GRAPH_TEMPLATES[sha] = template
    return copy.deepcopy(template)


def make_model_factory(arch: dict[str, Any]):
    """A callable returning a fresh, untrained model of the architecture spec ``arch``.

    For an uploaded graph, a copy of the graph whose parameters are re-initialised as PyTorch initialises each
    layer type (:func:`amulet.io.reinitialize_parameters`), drawing from torch's global generator: callers
    seed it (:func:`amulet.utils.seeded_init`, :meth:`amulet.recipes.Recipe.train`).
    """
    if arch["architecture"] == GRAPH_ARCHITECTURE:

        def graph_factory() -> nn.Module:
            model = load_graph_template(arch)
            model.reset_parameters()  # type: ignore[operator]
            return model

        return graph_factory

    def factory() -> nn.Module:
        return create_model(
            arch["architecture"],
            num_classes=arch["num_classes"],
            input_shape=tuple(arch["input_shape"]),
            **arch["config"],
        )

    return factory
