"""Cache of cell results (one JSON file per result; a re-run reuses every cell whose inputs are unchanged).

A cell's key is the SHA-256 of everything that determines its numbers:

* the plan's cell key and the unit it describes in full (dataset, model and training specs, the row's
  defense stack, the risk, the attack and its parameters, the seed);
* the SHA-256 of the target model's weights and of the assessment's data;
* the device type it runs on (and the GPU's name on CUDA);
* the versions of Python, torch, numpy, scipy, scikit-learn and opacus, and Amulet's version;
* the settings that change what a cell computes (:data:`KEY_SETTINGS`);
* a fingerprint of Amulet's code (:func:`code_fingerprint`: every ``*.py`` file of the installed package), so
  that any code change invalidates every cached cell, and a fingerprint of the code outside Amulet that the
  cell runs (an attack, defense or architecture registered by the user or a plugin).

Only ``"ok"`` results are stored (an error may be transient, a ``not_run`` reason is cheap to recompute).
Entries live under ``<root>/cells/<key>.json`` and are written atomically; a file that cannot be read, is not
valid JSON, or is not a cell result for its key is a cache miss (logged), never an error.

Example:
    >>> from amulet.assess import CellCache, load_spec, plan_assessment
    >>> plan = plan_assessment(load_spec({"dataset": {"name": "census"}, "risks": [{"risk": "evasion"}]}))
    >>> key = CellCache.make_key(plan, plan.cells[0].key, model_sha256="ab" * 32, data_sha256="cd" * 32,
    ...                          device="cpu")
    >>> len(key)
    64
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

import amulet
from amulet.assess._plan import AssessmentPlan
from amulet.assess._results import CellResult
from amulet.settings import get_settings

__all__ = ["CellCache", "code_fingerprint", "source_fingerprint"]

logger = logging.getLogger(__name__)

#: ``kind`` of a cache entry; any other file under ``cells/`` is foreign (a miss).
ENTRY_KIND = "amulet.cell-result"
#: Version of the entry format (part of every key, so a format change never reads old entries).
ENTRY_FORMAT = 1
#: Libraries whose version is part of every key (numerics may change between versions).
KEY_LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "opacus")
#: Settings (``amulet.settings.Settings`` fields) that change what a cell computes, so are part of every key.
#: A setting that is not defined (yet) counts as ``None``. Add every new setting that changes numbers here.
KEY_SETTINGS = ("population_mode",)

_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def _tree_sha256(root: Path) -> str:
    """SHA-256 over the sorted relative paths and the bytes of every ``*.py`` file under ``root``."""
    digest = hashlib.sha256()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.py") if p.is_file())
    for relative, path in files:
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of Amulet's code: the sorted relative paths and bytes of every ``*.py`` file of the package.

    Computed once per process. Part of every cell-cache key, so that any code change invalidates every
    cached cell.
    """
    return _tree_sha256(Path(amulet.__file__).resolve().parent)


@functools.lru_cache(maxsize=256)
def source_fingerprint(module_name: str) -> str | None:
    """SHA-256 of the code of the top-level package that defines ``module_name`` (computed once per process).

    Args:
        module_name: A module's ``__name__`` (e.g. ``"myplugin.attacks"``); its top-level package is hashed
            like :func:`code_fingerprint` hashes Amulet, a top-level module that is not a package by its file.

    Returns:
        The hex digest, or ``None`` when the code has no source file to hash (an interactive session, a
        namespace package): a cell that runs such code is never cached.
    """
    top = sys.modules.get(module_name.partition(".")[0])
    if top is None:
        return None
    paths = [Path(p) for p in getattr(top, "__path__", None) or ()]
    if paths:
        file = getattr(top, "__file__", None)
        if file is None or len(paths) != 1:  # a namespace package: no single root to hash
            return None
        return _tree_sha256(paths[0].resolve())
    file = getattr(top, "__file__", None)
    if not file or not Path(file).is_file():
        return None
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str | None]:
    # Read once per process: installed versions do not change under a running process.
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in KEY_LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _key_settings() -> dict[str, Any]:
    settings = get_settings()
    return {name: getattr(settings, name, None) for name in KEY_SETTINGS}


def _device_identity(device: torch.device | str) -> dict[str, Any]:
    device = torch.device(device)
    out: dict[str, Any] = {"type": device.type}
    if device.type == "cuda" and torch.cuda.is_available():
        out["name"] = torch.cuda.get_device_name(device)
    return out


def _external_code(code: Iterable[Callable[..., Any]]) -> dict[str, str | None]:
    """``module.qualname`` -> fingerprint of its package, for every callable defined outside Amulet."""
    out: dict[str, str | None] = {}
    for fn in code:
        module = getattr(fn, "__module__", None) or ""
        if module == "amulet" or module.startswith("amulet."):
            continue  # covered by code_fingerprint()
        name = f"{module}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
        out[name] = source_fingerprint(module) if module else None
    return out


def _same_result(a: CellResult, b: CellResult) -> bool:
    """Equal fields, with NaN equal to NaN in the metrics."""
    if a.model_dump(exclude={"metrics"}) != b.model_dump(exclude={"metrics"}) or a.metrics.keys() != b.metrics.keys():
        return False
    return all(
        (math.isnan(x) and math.isnan(y)) or x == y for x, y in ((a.metrics[k], b.metrics[k]) for k in a.metrics)
    )


class CellCache:
    """Results of cells on disk under ``<root>/cells/<key>.json`` (see the module docstring for the key).

    Args:
        root: Cache directory (the model cache's; created when first written).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def make_key(
        plan: AssessmentPlan,
        cell_key: str,
        *,
        model_sha256: str,
        data_sha256: str,
        device: torch.device | str,
        code: Iterable[Callable[..., Any]] = (),
    ) -> str | None:
        """SHA-256 hex of everything that determines the numbers of the cell ``cell_key`` of ``plan``.

        Args:
            plan: The assessment plan.
            cell_key: ``plan.cells[i].key``.
            model_sha256: SHA-256 of the target model's weights (``run_training``'s ``model_sha256``).
            data_sha256: SHA-256 of the assessment's data (``run_training``'s ``data_sha256``).
            device: The resolved device the cell runs on.
            code: The callables the cell runs (the attack's ``run``, the defenses' ``make_stage``, the
                architecture's factory); those defined outside Amulet add their package's fingerprint.

        Returns:
            The key, or ``None`` when the cell cannot be cached (it runs code with no source file to hash).

        Raises:
            KeyError: unknown cell key.
        """
        cell = plan.cell(cell_key)
        external = _external_code(code)
        if any(v is None for v in external.values()):
            logger.debug("cell %s is not cached: no source to fingerprint for %s", cell_key, sorted(external))
            return None
        column = plan.column(cell.risk, cell.attack)
        payload = {
            "format": ENTRY_FORMAT,
            "cell": cell_key,
            "unit": {
                "dataset": plan.spec.dataset.model_dump(mode="json"),
                "model": plan.spec.model.model_dump(mode="json"),
                "training": plan.spec.training.model_dump(mode="json"),
                "stack": plan.row(cell.row).stack,
                "risk": column.risk,
                "attack": column.attack,
                "params": column.params,
                "seed": cell.seed,
            },
            "model_sha256": model_sha256,
            "data_sha256": data_sha256,
            "device": _device_identity(device),
            "versions": {"amulet": amulet.__version__, **_library_versions()},
            "settings": _key_settings(),
            "code": code_fingerprint(),
            "external_code": external,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        """The file of ``key``.

        Raises:
            ValueError: ``key`` is not a 64-character lower-case hex digest.
        """
        if not _KEY_PATTERN.match(key):
            raise ValueError(
                f"The 'key' parameter of CellCache.path must be a SHA-256 hex digest. Got {key!r} instead."
            )
        return self.root / "cells" / f"{key}.json"

    def get(self, key: str) -> CellResult | None:
        """The result stored under ``key``, or ``None`` (no entry; or an unreadable, corrupt or foreign file).

        Args:
            key: A key from :meth:`make_key`.

        Returns:
            The stored :class:`CellResult` exactly as it was computed (``cached`` is ``False``: the caller
            marks the reuse), or ``None``.
        """
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("kind") != ENTRY_KIND or entry.get("key") != key:
                raise ValueError("not a cell result of this key")
            result = CellResult.model_validate(entry["result"])
            if result.status != "ok":
                raise ValueError(f"status {result.status!r} is never cached")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, ValidationError) as exc:
            logger.warning("cell cache: ignoring %s (%s: %s); the cell is recomputed", path, type(exc).__name__, exc)
            return None
        return result

    def put(self, key: str, result: CellResult) -> bool:
        """Store ``result`` under ``key`` (atomically) when its status is ``"ok"``.

        A result that would not read back identically (an infinite metric, which JSON writes as null) and a
        failing write are logged and skipped, never raised.

        Args:
            key: A key from :meth:`make_key`.
            result: The freshly computed result.

        Returns:
            True when the entry was written.
        """
        path = self.path(key)
        if result.status != "ok":
            return False
        result = result.model_copy(update={"cached": False, "computed_seconds": None})
        text = result.model_dump_json()
        if not _same_result(CellResult.model_validate_json(text), result):
            logger.info("cell cache: %s not stored (a metric does not round-trip through JSON)", result.key)
            return False
        entry = {
            "kind": ENTRY_KIND,
            "format": ENTRY_FORMAT,
            "key": key,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "amulet_version": amulet.__version__,
            "result": json.loads(text),
        }
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(entry, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cell cache: could not write %s (%s: %s)", path, type(exc).__name__, exc)
            tmp.unlink(missing_ok=True)
            return False
        return True
