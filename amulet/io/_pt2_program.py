"""Checking a ``.pt2`` archive's graph JSON before torch sees it: operators, argument kinds, symbolic shapes.

:func:`check_program` refuses any operator that is not a known ``aten``/``prims`` overload (or one of a few
``operator``/``math``/``torch.sym_*`` helpers on sizes), any argument that carries a script object, a subgraph
or an operator, and any symbolic-shape string that is not sympy arithmetic on shape symbols (torch would
``sympify`` it, which evaluates Python). :func:`signature_shapes` reads the one input and one output a
classifier must have. :mod:`amulet.io._pt2` reads the archive around it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch

from amulet.exceptions import ModelSpecError, UnsafeModelFileError

__all__ = ["check_program", "int_of", "signature_shapes", "unsafe"]


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


def unsafe(where: str, what: str) -> UnsafeModelFileError:
    return UnsafeModelFileError(
        f"The .pt2 archive is refused: {where} holds {what}. Amulet loads torch.export archives only when every "
        "part is plain data (tensors and the graph JSON of standard aten operators). Export the model with "
        "`amulet export-model` (or torch.export.export + torch.export.save of a module without custom operators "
        "or script objects)."
    )


def int_of(value: dict[str, Any], what: str) -> int:
    if not isinstance(value, dict) or "as_int" not in value or not isinstance(value["as_int"], int):
        raise ModelSpecError(f"The archive's {what} is not a fixed integer ({value!r}).")
    return int(value["as_int"])


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
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
        raise unsafe(where, f"a symbolic-shape expression that is not plain arithmetic ({str(expr)[:80]!r})")
    quoted = _QUOTED_RE.findall(expr)
    if any(not _QUOTED_OK_RE.fullmatch(q) for q in quoted):
        raise unsafe(where, f"a symbolic-shape expression with a string that is no symbol ({expr[:80]!r})")
    bare = _QUOTED_RE.sub("0", expr)
    if not _EXPR_CHARS_RE.match(bare) or re.search(r"(?<!\d)\.|\.(?!\d)", bare):
        raise unsafe(where, f"a symbolic-shape expression that is not plain arithmetic ({expr[:80]!r})")
    for name in _EXPR_NAME_RE.findall(bare):
        if not (_SYMBOL_RE.match(name) or name in _SYMPY_FUNCTIONS):
            raise unsafe(where, f"a symbolic-shape expression naming {name!r} ({expr[:80]!r})")


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


def check_program(program: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
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
        raise unsafe("the graph", f"operators that are not standard aten/prims operators: {listed}")
    if graph.get("custom_obj_values"):
        raise unsafe("the graph", "custom (script) objects")
    signature = graph_module.get("signature", {}) if isinstance(graph_module, dict) else {}
    for spec in signature.get("input_specs", []) if isinstance(signature, dict) else []:
        if isinstance(spec, dict) and ("custom_obj" in spec or "token" in spec):
            raise unsafe("the graph signature", "a custom-object or effect-token input")
    for path, key, value in _walk(program):
        if key in _UNSAFE_ARGUMENTS and value is not None:
            raise unsafe(f"the graph ({path.lstrip('.')})", _UNSAFE_ARGUMENTS[key])
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


def signature_shapes(program: dict[str, Any]) -> tuple[tuple[int, ...], int, bool]:
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
    input_shape = tuple(int_of(s, "input size (only the batch axis may be dynamic)") for s in in_sizes[1:])
    classes = int_of(out_sizes[1], "number of classes (output's last axis)")
    return input_shape, classes, "as_int" not in in_sizes[0]
