"""Reading a torch.export archive (``.pt2``) without ever running a pickle payload.

``torch.export.load`` is not safe for an upload: it loads pickled weights and constants with
``torch.load(weights_only=False)``, unpickles "opaque" constants with :func:`pickle.loads`, retries the sample
inputs with ``weights_only=False`` when the restricted load fails, turns symbolic-shape strings into sympy
expressions (``sympify``, which evaluates Python), and compiles the archive's ``guards_code`` strings into a
function. So Amulet never calls it. This module reads the archive itself:

1. the zip: every member name is relative and inside the archive's root folder, no member is unexpected (no
   AOTInductor or ExecuTorch payloads, no custom or opaque objects, no legacy pickled weight files), the
   total uncompressed size is bounded;
2. the graph JSON (``models/model.json``): every operator is a known ``aten``/``prims`` overload (or one of a
   few ``operator``/``math`` helpers on sizes), no argument is a script object, a subgraph or an operator,
   no input is a custom object or token, every symbolic-shape expression is arithmetic on shape symbols;
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

#: ``operator`` and ``math`` functions that exported graphs use on sizes (``x.shape[0] // 2``).
_PYTHON_OPS = {
    "_operator": {
        "getitem",
        "add",
        "sub",
        "mul",
        "floordiv",
        "truediv",
        "mod",
        "neg",
        "pow",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and_",
        "or_",
        "not_",
    },
    "math": {"ceil", "floor", "sqrt", "trunc"},
}
#: Symbolic-size helpers torch.export may emit (``torch.sym_max(s0, 1)``).
_TORCH_SYM_OPS = {"sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_sqrt", "sym_ite", "sym_sum"}
#: aten overloads that touch files or run no tensor math; refused even though they are aten.
_DENIED_ATEN = {"from_file", "_from_file", "save", "_save", "load"}
_OP_RE = re.compile(r"^torch\.ops\.(aten|prims)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)$")
#: A symbolic expression: shape symbols (s0, u3, ...), integers, arithmetic and a few sympy functions. No
#: dots, quotes, brackets or underscores-prefixed names can appear, so ``sympify`` cannot reach any object.
_EXPR_CHARS_RE = re.compile(r"^[A-Za-z0-9_+\-*/%(), <>=!&|~^.]*$")
#: Quoted strings inside a sympy ``srepr`` (``Symbol('s77', positive=True, integer=True)``, ``Float('0.5', 53)``).
_QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"")
_QUOTED_OK_RE = re.compile(r"""(['"])((s|u|ps|zf|zuf|q|idx|c|d)\d+|-?\d+(\.\d+)?(e-?\d+)?)\1""")
_EXPR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOL_RE = re.compile(r"^(s|u|ps|zf|zuf|q|idx|c|d)\d+$")
_SYMPY_FUNCTIONS = {
    "Symbol",
    "Integer",
    "Rational",
    "Float",
    "Add",
    "Mul",
    "Pow",
    "positive",
    "negative",
    "nonnegative",
    "nonpositive",
    "integer",
    "real",
    "finite",
    "nonzero",
    "zero",
    "even",
    "odd",
    "precision",
    "Max",
    "Min",
    "FloorDiv",
    "CleanDiv",
    "CeilDiv",
    "Mod",
    "PythonMod",
    "ModularIndexing",
    "Where",
    "FloorToInt",
    "CeilToInt",
    "TruncToInt",
    "IntTrueDiv",
    "FloatTrueDiv",
    "ToFloat",
    "Abs",
    "Eq",
    "Ne",
    "Lt",
    "Le",
    "Gt",
    "Ge",
    "And",
    "Or",
    "Not",
    "True",
    "False",
    "floor",
    "ceiling",
    "oo",
}
#: Argument kinds that smuggle objects or subgraphs into a node.
_UNSAFE_ARGUMENTS = {
    "as_custom_obj": "a custom (script) object",
    "as_graph": "a subgraph (control flow or another higher-order operator)",
    "as_operator": "an operator passed as an argument (a higher-order operator)",
    "as_operators": "operators passed as an argument (a higher-order operator)",
}


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


def _unsafe(where: str, what: str) -> UnsafeModelFileError:
    return UnsafeModelFileError(
        f"The .pt2 archive is refused: {where} holds {what}. Amulet loads torch.export archives only when every "
        "part is plain data (tensors and the graph JSON of standard aten operators). Export the model with "
        "`amulet export-model` (or torch.export.export + torch.export.save of a module without custom operators "
        "or script objects)."
    )


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
            raise _unsafe(f"the member {name!r}", "a path outside the archive")
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
                raise _unsafe(f"the member {name!r}", what)
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
        raise _unsafe(
            where, f"a pickle that needs more than tensors to load ({detail[-1] if detail else exc})"
        ) from exc
    except (RuntimeError, ValueError, EOFError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise ModelSpecError(f"The archive's {where} is damaged: {exc}.") from exc


def _int_of(value: dict[str, Any], what: str) -> int:
    if not isinstance(value, dict) or "as_int" not in value or not isinstance(value["as_int"], int):
        raise ModelSpecError(f"The archive's {what} is not a fixed integer ({value!r}).")
    return int(value["as_int"])


def _decode_tensor(raw: bytes, meta: dict[str, Any], where: str) -> torch.Tensor:
    from torch._export.serde.serialize import deserialize_scalar_type

    try:
        dtype = deserialize_scalar_type(meta["dtype"])
        sizes = [_int_of(s, f"{where} size") for s in meta["sizes"]]
        strides = [_int_of(s, f"{where} stride") for s in meta["strides"]]
        offset = _int_of(meta.get("storage_offset", {"as_int": 0}), f"{where} storage offset")
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
            raise _unsafe(where, "a custom or opaque object")
        if member not in members:
            raise ModelSpecError(f"The archive's {config_name} names {member!r}, which the archive lacks.")
        data = archive.read(members[member])
        if entry.get("use_pickle"):
            value = _restricted_load(data, where)
            if not isinstance(value, torch.Tensor):
                raise _unsafe(where, f"a pickled {type(value).__name__}, not a tensor")
        else:
            meta = entry.get("tensor_meta")
            if not isinstance(meta, dict):
                raise ModelSpecError(f"The archive's {where} has no tensor description.")
            value = _decode_tensor(data, meta, where)
            if meta.get("requires_grad"):
                value.requires_grad_(True)
        out[fqn] = (bool(entry.get("is_param")), value)
    return out


def _walk(obj: Any, path: str = ""):
    """Every (path, key, value) of a JSON tree."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _walk(value, f"{path}[{i}]")


def _check_expression(expr: Any, where: str) -> None:
    """Refuse a symbolic-shape string unless it is sympy arithmetic on shape symbols (``sympify`` evaluates it)."""
    if not isinstance(expr, str) or len(expr) > 4000 or "__" in expr:
        raise _unsafe(where, f"a symbolic-shape expression that is not plain arithmetic ({str(expr)[:80]!r})")
    quoted = _QUOTED_RE.findall(expr)
    if any(not _QUOTED_OK_RE.fullmatch(q) for q in quoted):
        raise _unsafe(where, f"a symbolic-shape expression with a string that is no symbol ({expr[:80]!r})")
    bare = _QUOTED_RE.sub("0", expr)
    if not _EXPR_CHARS_RE.match(bare) or re.search(r"(?<!\d)\.|\.(?!\d)", bare):
        raise _unsafe(where, f"a symbolic-shape expression that is not plain arithmetic ({expr[:80]!r})")
    for name in _EXPR_NAME_RE.findall(bare):
        if not (_SYMBOL_RE.match(name) or name in _SYMPY_FUNCTIONS):
            raise _unsafe(where, f"a symbolic-shape expression naming {name!r} ({expr[:80]!r})")


def _operator_problem(target: str) -> str:
    """Empty when ``target`` is an operator Amulet runs, else why not."""
    match = _OP_RE.match(target)
    if match:
        namespace, name, overload = match.groups()
        if namespace == "aten" and name in _DENIED_ATEN:
            return "an aten operator that reads or writes files"
        packet = getattr(getattr(torch.ops, namespace), name, None)
        if packet is None or not isinstance(getattr(packet, overload, None), torch._ops.OpOverload):
            return "an unknown operator"
        return ""
    module, _, name = target.partition(".")
    if module in _PYTHON_OPS and name in _PYTHON_OPS[module]:
        return ""
    if module == "torch" and name in _TORCH_SYM_OPS:
        return ""
    if target.startswith("torch.ops.higher_order."):
        return "a higher-order operator (control flow), which Amulet does not train through"
    if target.startswith("torch.ops."):
        return "a custom operator"
    return "an unknown operator"


def _check_program(program: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """Check the graph JSON; return its operators and warnings."""
    graph_module = program.get("graph_module")
    graph = graph_module.get("graph") if isinstance(graph_module, dict) else None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise ModelSpecError("The archive's models/model.json has no graph.")
    operators = set()
    bad: dict[str, str] = {}
    for node in graph["nodes"]:
        target = node.get("target") if isinstance(node, dict) else None
        if not isinstance(target, str):
            raise ModelSpecError("The archive's graph has a node without an operator.")
        operators.add(target)
        problem = _operator_problem(target)
        if problem:
            bad[target] = problem
    if bad:
        listed = "; ".join(f"{t} ({why})" for t, why in sorted(bad.items())[:8])
        raise _unsafe("the graph", f"operators that are not standard aten/prims operators: {listed}")
    if graph.get("custom_obj_values"):
        raise _unsafe("the graph", "custom (script) objects")
    signature = graph_module.get("signature", {}) if isinstance(graph_module, dict) else {}
    for spec in signature.get("input_specs", []) if isinstance(signature, dict) else []:
        if isinstance(spec, dict) and ("custom_obj" in spec or "token" in spec):
            raise _unsafe("the graph signature", "a custom-object or effect-token input")
    for path, key, value in _walk(program):
        if key in _UNSAFE_ARGUMENTS and value is not None:
            raise _unsafe(f"the graph ({path.lstrip('.')})", _UNSAFE_ARGUMENTS[key])
        if key == "expr_str":
            _check_expression(value, f"the graph ({path.lstrip('.')})")
    for name in program.get("range_constraints") or {}:
        _check_expression(name, "the range constraints")
    warnings = []
    if program.get("guards_code"):
        warnings.append(
            f"dropped {len(program['guards_code'])} guard code string(s) of the archive (Amulet never compiles "
            "code from an upload; input shapes are still checked)"
        )
    return tuple(sorted(operators)), warnings


def _signature_shapes(program: dict[str, Any]) -> tuple[tuple[int, ...], int, bool]:
    """(input shape without batch axis, output's last axis, dynamic batch) from the user input/output."""
    graph_module = program["graph_module"]
    graph, signature = graph_module["graph"], graph_module.get("signature", {})
    tensors = graph.get("tensor_values", {})
    user_inputs = [s["user_input"] for s in signature.get("input_specs", []) if "user_input" in s]
    user_outputs = [s["user_output"] for s in signature.get("output_specs", []) if "user_output" in s]
    if len(user_inputs) != 1 or len(user_outputs) != 1:
        raise ModelSpecError(
            f"The exported model takes {len(user_inputs)} input(s) and returns {len(user_outputs)} output(s); "
            "Amulet assesses classifiers with one input tensor (a batch of examples) and one output tensor (the "
            "logits). Export a forward(x) -> logits."
        )

    def sizes_of(arg: dict[str, Any], what: str) -> list[dict[str, Any]]:
        tensor = (arg.get("arg") or {}).get("as_tensor")
        if not isinstance(tensor, dict) or tensor.get("name") not in tensors:
            raise ModelSpecError(f"The exported model's {what} is not a tensor.")
        return tensors[tensor["name"]]["sizes"]

    in_sizes = sizes_of(user_inputs[0], "input")
    out_sizes = sizes_of(user_outputs[0], "output")
    if len(in_sizes) < 2 or len(out_sizes) != 2:
        raise ModelSpecError(
            f"The exported model maps an input of rank {len(in_sizes)} to an output of rank {len(out_sizes)}; "
            "Amulet needs a batch of examples (batch, features...) in and logits (batch, classes) out."
        )
    input_shape = tuple(_int_of(s, "input size (only the batch axis may be dynamic)") for s in in_sizes[1:])
    classes = _int_of(out_sizes[1], "number of classes (output's last axis)")
    return input_shape, classes, "as_int" not in in_sizes[0]


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
        operators, warnings = _check_program(program)
        input_shape, classes, dynamic = _signature_shapes(program)
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
                    raise _unsafe("the sample inputs", "objects other than tensors")
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
