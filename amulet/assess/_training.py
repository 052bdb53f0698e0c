"""Training the model of one (row, seed) of an assessment, or reusing it from the content-addressed cache.

:func:`run_training` is idempotent: a model whose cache key (architecture, recipe or uploaded weights, member
rows, seed) is cached is reused, not retrained. Every trained model is checked against the architecture its
recipe declares and measured on the test rows (:func:`amulet.utils.check_utility`) before it is cached.
Steps that report no progress of their own are framed by :class:`Step` (cancellation checkpoints).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from amulet.assess._cache import ModelCache, count_training, file_sha256
from amulet.assess._data import (
    GRAPH_ARCHITECTURE,
    architecture_spec,
    load_bundle,
    load_graph_template,
    make_model_factory,
    split_for_seed,
    tensor_sha256,
)
from amulet.assess._plan import AssessmentPlan
from amulet.assess._results import ACCURACY_KEY, MAJORITY_KEY, P_VALUE_KEY, TOP_CLASS_KEY
from amulet.io import load_model
from amulet.progress import Progress, resolve_progress
from amulet.settings import get_settings
from amulet.utils import check_utility, predict_logits, resolve_device

__all__ = ["UTILITY_FIELDS", "Step", "default_cache_dir", "resolve_torch_device", "run_training"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``<artifact dir>/cache`` from the settings."""
    return get_settings().resolved_artifact_dir / "cache"


class Step:
    """Frames a step that reports no progress of its own with a start and a finish event (both
    cancellation checkpoints: a reporter may raise :class:`RunCancelledError` from either)."""

    def __init__(self, progress: Progress, key: str, description: str) -> None:
        self.progress, self.key, self.description = progress, key, description

    def __enter__(self) -> None:
        self.progress.start(self.key, None, self.description)

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        if exc_type is None:  # an error of the step itself is reported, not masked by a checkpoint
            self.progress.finish(self.key)


def resolve_torch_device(device: torch.device | str | None) -> torch.device:
    return resolve_device(device)


def _import_weights(arch: dict[str, Any], weights: str, factory: Any) -> torch.nn.Module:
    """The user's trained model through ``amulet.io`` (checked against the architecture; never unpickled):
    safetensors weights of a registered architecture, or an uploaded graph (``model.file``) as deployed."""
    if arch["architecture"] == GRAPH_ARCHITECTURE:
        return load_graph_template(arch)
    return load_model(arch, weights)


def _cache_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """The architecture spec as the model cache keys it: an uploaded graph by its SHA-256, not its path."""
    return {k: v for k, v in arch.items() if k != "file"}


#: The utility figures a training records (record / model-cache sidecar key -> cell metric key).
UTILITY_FIELDS = {
    "test_accuracy": ACCURACY_KEY,
    "majority_rate": MAJORITY_KEY,
    "top_class_share": TOP_CLASS_KEY,
    "accuracy_p_value": P_VALUE_KEY,
}


def _evaluate(model: torch.nn.Module, data: Any, device: torch.device) -> dict[str, Any]:
    """The model's utility on the test rows (:func:`amulet.utils.check_utility`), as record fields."""
    utility = check_utility(data.y, predict_logits(model, data.x, device=device).argmax(1))
    if utility.degenerate:
        logger.warning("the model is degenerate on the %d test rows: %s", utility.n, utility.reason)
    return {
        "test_accuracy": utility.accuracy,
        "majority_rate": utility.majority_rate,
        "top_class_share": utility.top_class_share,
        "accuracy_p_value": utility.p_value,
        "degenerate": utility.degenerate,
        "degenerate_reason": utility.reason,
    }


def run_training(
    plan: AssessmentPlan,
    training_key: str,
    *,
    cache_dir: str | Path,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train the model of one (row, seed) of ``plan`` unless the cache already holds it (idempotent).

    Args:
        plan: The assessment plan.
        training_key: ``plan.trainings[i].key``.
        cache_dir: Content-addressed cache directory (shared by every run and worker).
        device: Torch device (default: the settings' device).
        progress: Progress reporter (training reports task ``"train"``).

    Returns:
        A JSON-able record: ``key``, ``row``, ``seed``, ``status`` (``"trained"``, ``"reused"`` or
        ``"imported"``), ``cache_key``, ``model_sha256``, ``data_sha256``, the utility check on the test
        rows (``test_accuracy``, ``majority_rate``, ``top_class_share`` in %, ``accuracy_p_value``,
        ``degenerate``, ``degenerate_reason``; a reused model whose sidecar predates them is evaluated
        again and its sidecar completed), ``model_attributes``, ``seconds``, ``device``.

    Raises:
        KeyError: unknown training key. Errors of data loading or training propagate.
        RunCancelledError: ``progress`` cancelled the run.
    """
    training = plan.training(training_key)
    device = resolve_torch_device(device)
    progress = resolve_progress(progress)
    start = time.perf_counter()
    with Step(progress, "data", "loading the data"):
        bundle = load_bundle(plan.spec.dataset)
        member, _ = split_for_seed(bundle, training.seed, plan.spec.dataset.member_fraction)
    arch = architecture_spec(plan.spec.model, bundle)
    factory = make_model_factory(arch)
    recipe = plan.recipe(training.row)
    uploaded = plan.spec.model.weights or plan.spec.model.file
    weights = uploaded if recipe.is_plain else None
    if weights and plan.spec.model.file:
        recipe_part = f"uploaded-graph:{arch['config']['sha256']}"
    else:
        recipe_part = f"weights:{file_sha256(weights)}" if weights else recipe.key
    cache = ModelCache(cache_dir)
    cache_key = ModelCache.make_key(
        _cache_arch(arch), recipe_part, tensor_sha256(member.x, member.y, member.z), training.seed
    )
    record = {
        "key": training_key,
        "row": training.row,
        "seed": training.seed,
        "cache_key": cache_key,
        "data_sha256": bundle.sha256,
        "device": str(device),
    }
    if cache.has(cache_key):
        meta = cache.meta(cache_key)
        if any(meta.get(name) is None for name in UTILITY_FIELDS):
            # A model cached before the utility check existed: measure it now, once.
            model = cache.load(cache_key, recipe.architecture(factory), device)
            meta = cache.update_meta(cache_key, _evaluate(model, bundle.test, device))
        count_training("reused")
        logger.info("training %s: reused %s", training_key, cache_key[:12])
        return {
            **record,
            "status": "reused",
            "model_sha256": meta["weights_sha256"],
            **{name: meta.get(name) for name in (*UTILITY_FIELDS, "degenerate", "degenerate_reason")},
            "model_attributes": meta.get("model_attributes", {}),
            "seconds": round(time.perf_counter() - start, 3),
        }
    if weights:
        with Step(progress, "import", "loading the uploaded model"):
            model = _import_weights(arch, weights, factory).to(device).eval()
        status = "imported"
    else:
        model = recipe.train(factory, member, seed=training.seed, device=device, progress=progress)
        status = "trained"
        with Step(progress, "structure", "checking the trained model against its architecture"):
            _check_structure(model, recipe.architecture(factory), recipe.name)
    with Step(progress, "evaluate", "measuring the model's utility on the test rows"):
        utility = _evaluate(model, bundle.test, device)
    accuracy = utility["test_accuracy"]
    attributes = _model_attributes(model)
    seconds = round(time.perf_counter() - start, 3)
    meta = cache.save(
        cache_key,
        model,
        {
            "architecture": arch,
            "recipe": recipe_part,
            "row": training.row,
            "seed": training.seed,
            "data_sha256": bundle.sha256,
            **utility,
            "train_seconds": seconds,
            "status": status,
            "member_rows": len(member),
            "model_attributes": attributes,
        },
    )
    count_training(status)
    logger.info("training %s: %s in %.1fs, test accuracy %.2f%%", training_key, status, seconds, accuracy)
    return {
        **record,
        "status": status,
        "model_sha256": meta["weights_sha256"],
        **utility,
        "model_attributes": attributes,
        "seconds": seconds,
    }


def _check_structure(model: torch.nn.Module, structure: Any, recipe_name: str) -> None:
    """Fail clearly when trained weights would not load back into the recipe's declared architecture."""
    try:
        structure().load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise ValueError(
            f"The model trained by the recipe {recipe_name!r} does not fit the architecture it declares, so it "
            f"cannot be cached and reloaded: {str(exc).splitlines()[0]} {' '.join(str(exc).split())[:300]}. A defense "
            "that changes the model's structure must say how with its stage's 'adapt_model'."
        ) from None


def _model_attributes(model: torch.nn.Module) -> dict[str, float]:
    """Public numeric attributes a defense left on the model (e.g. ``privacy_epsilon_``), for the report."""
    out = {}
    for name, value in vars(model).items():
        if (
            name.endswith("_")
            and not name.startswith("_")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            out[name.rstrip("_")] = float(value)
    return out
