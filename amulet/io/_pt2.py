"""Reading a torch.export archive (``.pt2``) without ever running a pickle payload.

``torch.export.load`` is not safe for an upload: it loads pickled weights and constants with
``torch.load(weights_only=False)``, unpickles "opaque" constants with :func:`pickle.loads`, retries the sample
inputs with ``weights_only=False`` when the restricted load fails, turns symbolic-shape strings into sympy
expressions (``sympify``, which evaluates Python), and compiles the archive's ``guards_code`` strings into a
function. So Amulet never calls it. This module reads the archive itself:

1. the zip: every member name is relative and inside the archive's root folder, no member is unexpected (no
   AOTInductor or ExecuTorch payloads, no custom or opaque objects, no legacy pickled weight files), the
   total uncompressed size is bounded;
2. the graph JSON (``models/model.json``; :mod:`amulet.io._pt2_program`): every operator is a known
   ``aten``/``prims`` overload (or one of a few ``operator``/``math`` helpers on sizes), no argument is a
   script object, a subgraph or an operator, no input is a custom object or token, every symbolic-shape
   expression is arithmetic on shape symbols;
3. the payloads: raw tensor files are decoded from their recorded dtype, shape and strides; the few pickled
   members (pickled weights or constants, the sample inputs) are read with ``torch.load(weights_only=True)``
   only, and must be tensors (or a tuple/dict of tensors for the sample inputs).

Only then does torch's own deserializer build the program, and it is handed the already decoded objects
(never bytes), so none of its ``weights_only=False`` fallbacks can be reached; the guard strings are dropped
(the input shapes are checked by the module's pre-hook instead).
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from amulet.io._pt2_program import check_program, int_of, signature_shapes, unsafe

__all__ = ["MAX_UNCOMPRESSED_BYTES", "Pt2Archive", "load_pt2_module", "read_pt2_archive"]

logger = logging.getLogger(__name__)

#: Largest total uncompressed size of an archive (guards against zip bombs).
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
#: Most members an archive may have.
MAX_MEMBERS = 20_000

#: Members a plain ``torch.export.save`` archive of one program holds (paths relative to the root folder).
_ALLOWED_MEMBERS = (
    re.compile(r"archive_format"),
    re.compile(r"archive_version"),
    re.compile(r"byteorder"),
    re.compile(r"\.data/version"),
    re.compile(r"\.data/serialization_id"),
    re.compile(r"models/model\.json"),
    re.compile(r"data/weights/model_weights_config\.json"),
    re.compile(r"data/weights/weight_\d+"),
    re.compile(r"data/constants/model_constants_config\.json"),
    re.compile(r"data/constants/tensor_\d+"),
    re.compile(r"data/sample_inputs/model\.pt"),
    re.compile(r"extra/[A-Za-z0-9_.\-/]+"),  # user text files; never read
)
#: Member patterns refused as unsafe, with the reason.
_UNSAFE_MEMBERS = (
    (re.compile(r"data/constants/custom_obj_.*"), "a TorchScript custom object (script object)"),
    (re.compile(r"data/constants/opaque_obj_.*"), "an opaque Python object (read with pickle.loads)"),
    (re.compile(r"data/(weights|constants)/[^/]+\.pt"), "a legacy pickled weights/constants file"),
    (re.compile(r"data/aotinductor/.*"), "a compiled AOTInductor shared library"),
    (re.compile(r"data/executorch/.*"), "an ExecuTorch program"),
    (re.compile(r"data/mtia.*"), "an MTIA payload"),
    (re.compile(r"xl_model_weights/.*"), "external XL weights"),
)


@dataclass
class Pt2Archive:
    """A validated ``.pt2`` archive, decoded into plain Python objects (no pickle payload was run).

    Attributes:
        program: The graph JSON (``models/model.json``) as a dict, with ``guards_code`` cleared.
        state_dict: Parameters and buffers by name (``nn.Parameter`` for parameters).
        constants: Tensor constants by name.
        sample_inputs: The sample inputs (``(args, kwargs)``), or ``None`` when the archive has none.
        operators: The graph's operators, sorted.
        input_shape: One example's input shape (no batch axis).
        num_outputs: The size of the output's last axis (the number of classes of a classifier).
        num_parameters: Elements in the parameters (buffers excluded).
        dynamic_batch: Whether the batch axis is symbolic (any batch size) or fixed.
    """

    program: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    constants: dict[str, torch.Tensor]
    sample_inputs: Any
    operators: tuple[str, ...]
    input_shape: tuple[int, ...]
    num_outputs: int
    num_parameters: int
    dynamic_batch: bool
    warnings: list[str] = field(default_factory=list)


def _open_zip(path: Path) -> tuple[zipfile.ZipFile, str, dict[str, zipfile.ZipInfo]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelSpecError(f"{path.name!r} is not a torch.export archive (not a zip file: {exc}).") from exc
    infos = archive.infolist()
    if not infos:
        raise ModelSpecError(f"{path.name!r} is an empty zip file, not a torch.export archive.")
    if len(infos) > MAX_MEMBERS:
        raise ModelSpecError(f"The archive has {len(infos)} members; at most {MAX_MEMBERS} are read.")
    if sum(i.file_size for i in infos) > MAX_UNCOMPRESSED_BYTES:
        raise ModelSpecError(f"The archive unpacks to more than {MAX_UNCOMPRESSED_BYTES} bytes; it is refused.")
    roots = set()
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        pure = PurePosixPath(name)
        if "\\" in name or pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise unsafe(f"the member {name!r}", "a path outside the archive")
        if info.is_dir():
            continue
        roots.add(pure.parts[0])
        members["/".join(pure.parts[1:])] = info
    if len(roots) != 1:
        raise ModelSpecError(
            f"A torch.export archive has one root folder; {path.name!r} has {sorted(roots)[:5]}. Save it with "
            "torch.export.save."
        )
    return archive, roots.pop(), members


def _check_members(members: dict[str, zipfile.ZipInfo]) -> None:
    for name in members:
        for pattern, what in _UNSAFE_MEMBERS:
            if pattern.fullmatch(name):
                raise unsafe(f"the member {name!r}", what)
        if not any(p.fullmatch(name) for p in _ALLOWED_MEMBERS):
            raise ModelSpecError(
                f"The archive has a member Amulet does not read: {name!r}. Only archives written by "
                "torch.export.save for one program (named 'model') are accepted."
            )
    for required in ("archive_format", "models/model.json", "data/weights/model_weights_config.json"):
        if required not in members:
            raise ModelSpecError(
                f"The archive has no {required!r}; it was not written by torch.export.save (torch >= 2.7)."
            )


def _restricted_load(data: bytes, where: str) -> Any:
    """``torch.load(weights_only=True)``: the restricted unpickler refuses every global but tensors and
    plain containers before anything runs."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()
        raise unsafe(where, f"a pickle that needs more than tensors to load ({detail[-1] if detail else exc})") from exc
    except (RuntimeError, ValueError, EOFError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise ModelSpecError(f"The archive's {where} is damaged: {exc}.") from exc


def _decode_tensor(raw: bytes, meta: dict[str, Any], where: str) -> torch.Tensor:
    from torch._export.serde.serialize import deserialize_scalar_type

    try:
        dtype = deserialize_scalar_type(meta["dtype"])
        sizes = [int_of(s, f"{where} size") for s in meta["sizes"]]
        strides = [int_of(s, f"{where} stride") for s in meta["strides"]]
        offset = int_of(meta.get("storage_offset", {"as_int": 0}), f"{where} storage offset")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelSpecError(f"The archive's {where} has a malformed tensor description: {exc}.") from exc
    if len(sizes) != len(strides) or any(v < 0 for v in (*sizes, *strides, offset)):
        raise ModelSpecError(f"The archive's {where} has inconsistent sizes/strides {sizes}/{strides}.")
    element = torch.empty((), dtype=dtype).element_size()
    if len(raw) % element:
        raise ModelSpecError(f"The archive's {where} is {len(raw)} bytes, not a multiple of {dtype}'s size.")
    if math.prod(sizes) == 0:
        return torch.zeros(sizes, dtype=dtype)
    needed = offset + sum((s - 1) * st for s, st in zip(sizes, strides)) + 1
    if needed * element > len(raw):
        raise ModelSpecError(
            f"The archive's {where} holds {len(raw)} bytes but its shape {sizes} needs {needed * element}."
        )
    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    return torch.as_strided(flat, sizes, strides, offset).clone()


def _read_json(archive: zipfile.ZipFile, root: str, name: str) -> Any:
    try:
        return json.loads(archive.read(f"{root}/{name}"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"The archive's {name} is not valid JSON: {exc}.") from exc


def _payloads(
    archive: zipfile.ZipFile, root: str, members: dict[str, zipfile.ZipInfo], config_name: str, directory: str
) -> dict[str, tuple[bool, torch.Tensor]]:
    """``{fqn: (is_param, tensor)}`` of a weights/constants config, pickled entries read weights-only."""
    config = _read_json(archive, root, config_name)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelSpecError(f"The archive's {config_name} has no 'config' mapping.")
    out: dict[str, tuple[bool, torch.Tensor]] = {}
    for fqn, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
            raise ModelSpecError(f"The archive's {config_name} entry {fqn!r} is malformed.")
        member = f"{directory}{entry['path_name']}"
        where = f"{member!r} ({fqn})"
        if entry["path_name"].startswith(("custom_obj_", "opaque_obj_")):
            raise unsafe(where, "a custom or opaque object")
        if member not in members:
            raise ModelSpecError(f"The archive's {config_name} names {member!r}, which the archive lacks.")
        data = archive.read(members[member])
        if entry.get("use_pickle"):
            value = _restricted_load(data, where)
            if not isinstance(value, torch.Tensor):
                raise unsafe(where, f"a pickled {type(value).__name__}, not a tensor")
        else:
            meta = entry.get("tensor_meta")
            if not isinstance(meta, dict):
                raise ModelSpecError(f"The archive's {where} has no tensor description.")
            value = _decode_tensor(data, meta, where)
            if meta.get("requires_grad"):
                value.requires_grad_(True)
        out[fqn] = (bool(entry.get("is_param")), value)
    return out


def read_pt2_archive(path: str | Path) -> Pt2Archive:
    """Validate a ``.pt2`` archive and decode it into plain objects, running no pickle payload.

    Raises:
        UnsafeModelFileError: custom or unknown operators, script/opaque objects, pickles that need more than
            tensors, code strings, compiled payloads, paths outside the archive.
        ModelSpecError: not a torch.export archive, damaged members, or a signature Amulet cannot assess.
    """
    path = Path(path)
    archive, root, members = _open_zip(path)
    with archive:
        _check_members(members)
        if archive.read(members["archive_format"]).strip() != b"pt2":
            raise ModelSpecError("The archive's 'archive_format' is not 'pt2'.")
        program = _read_json(archive, root, "models/model.json")
        if not isinstance(program, dict):
            raise ModelSpecError("The archive's models/model.json is not a JSON object.")
        operators, warnings = check_program(program)
        input_shape, classes, dynamic = signature_shapes(program)
        weights = _payloads(archive, root, members, "data/weights/model_weights_config.json", "data/weights/")
        constants: dict[str, torch.Tensor] = {}
        if "data/constants/model_constants_config.json" in members:
            constants = {
                k: v
                for k, (_, v) in _payloads(
                    archive, root, members, "data/constants/model_constants_config.json", "data/constants/"
                ).items()
            }
        sample_inputs = None
        if "data/sample_inputs/model.pt" in members:
            raw = archive.read(members["data/sample_inputs/model.pt"])
            if raw:
                sample_inputs = _restricted_load(raw, "'data/sample_inputs/model.pt' (the sample inputs)")
                leaves = torch.utils._pytree.tree_leaves(sample_inputs)
                if not isinstance(sample_inputs, (tuple, dict)) or not all(
                    isinstance(x, (torch.Tensor, int, float, bool, str, type(None))) for x in leaves
                ):
                    raise unsafe("the sample inputs", "objects other than tensors")
    state_dict: dict[str, torch.Tensor] = {}
    n_params = 0
    for fqn, (is_param, tensor) in weights.items():
        if is_param:
            state_dict[fqn] = torch.nn.Parameter(tensor, requires_grad=tensor.requires_grad)
            n_params += tensor.numel()
        else:
            state_dict[fqn] = tensor
    program["guards_code"] = []
    return Pt2Archive(
        program=program,
        state_dict=state_dict,
        constants=constants,
        sample_inputs=sample_inputs,
        operators=operators,
        input_shape=input_shape,
        num_outputs=classes,
        num_parameters=n_params,
        dynamic_batch=dynamic,
        warnings=warnings,
    )


def load_pt2_module(archive: Pt2Archive) -> torch.fx.GraphModule:
    """Build the validated program's module (torch's deserializer on decoded objects, no fallbacks)."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    for message in archive.warnings:
        logger.warning("%s", message)
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, archive.program)
        # Decoded objects only: the deserializer returns dicts/tuples as they are and never reaches its
        # torch.load(weights_only=False) fallback, which only applies to bytes.
        program = ExportedProgramDeserializer().deserialize(
            serialized,
            dict(archive.state_dict),
            dict(archive.constants),
            archive.sample_inputs if archive.sample_inputs is not None else ((), {}),
        )
        module = program.module(check_guards=False)
    except (UnsafeModelFileError, ModelSpecError):
        raise
    except Exception as exc:  # torch's deserializer raises many types for a malformed program
        raise ModelSpecError(
            f"The torch.export archive could not be deserialised by torch {torch.__version__}: "
            f"{type(exc).__name__}: {str(exc)[:300]}. Re-export it with this torch version (amulet export-model)."
        ) from exc
    # torch blocks train()/eval() on exported modules because the graph's dropout/batch-norm calls carry the
    # mode as a constant; amulet.io.GraphModel rewrites those constants on train()/eval() instead.
    for name in ("train", "eval"):
        module.__dict__.pop(name, None)
    return module
