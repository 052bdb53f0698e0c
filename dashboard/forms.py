"""Forms generated from JSON Schemas (the registry's ``params_schema`` of every attack and defense).

No module has a hand-written form: :func:`schema_fields` reads a pydantic v2 JSON Schema into
:class:`FieldSpec` objects (type, default, bounds, choices, help), :func:`render_fields` draws them as
Streamlit widgets (number inputs with min/max/default/help, selects for enums, checkboxes for booleans,
text inputs for strings and lists) and :func:`parse_sweep` turns "0.5, 1, 2" into a list of checked
values for parameter sweeps.

Example:
    >>> schema = {"properties": {"epsilon": {"type": "number", "default": 0.1, "minimum": 0, "maximum": 1}}}
    >>> [f.name for f in schema_fields(schema)]
    ['epsilon']
    >>> parse_sweep(schema_fields(schema)[0], "0.1, 0.3")
    [0.1, 0.3]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from dashboard.widget_values import held

__all__ = ["FieldSpec", "check_value", "parse_sweep", "render_fields", "schema_fields"]


@dataclass(frozen=True)
class FieldSpec:
    """One parameter of a JSON Schema, flattened for a form.

    Attributes:
        name: Property name (the parameter key in a spec).
        title: Label shown to the user.
        kind: ``"integer"``, ``"number"``, ``"boolean"``, ``"enum"``, ``"string"``, ``"list"`` or ``"json"``.
        default: The schema's default (``None`` when absent).
        minimum / maximum: Inclusive bounds, if any.
        exclusive_minimum / exclusive_maximum: Exclusive bounds, if any.
        choices: Allowed values of an enum.
        item_kind: Element kind of a list (``"number"``, ``"integer"``, ``"string"``).
        nullable: Whether ``null`` is allowed.
        help: Description from the schema.
        required: Whether the schema lists the property as required.
    """

    name: str
    title: str
    kind: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: tuple[Any, ...] = ()
    item_kind: str = "number"
    nullable: bool = False
    help: str = ""
    required: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def numeric(self) -> bool:
        """True for integer and number fields (the ones a sweep makes sense for)."""
        return self.kind in ("integer", "number")


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Inline ``$ref`` and collapse ``anyOf: [X, null]`` / ``allOf: [X]``; note nullability."""
    out = dict(node)
    nullable = False
    if "$ref" in out:
        ref = str(out.pop("$ref")).rsplit("/", 1)[-1]
        out = {**defs.get(ref, {}), **out}
    for key in ("anyOf", "oneOf"):
        if key in out:
            options = [_resolve(o, defs) for o in out.pop(key)]
            non_null = [o for o in options if o.get("type") != "null"]
            nullable = len(non_null) < len(options)
            if len(non_null) == 1:
                out = {**non_null[0], **out}
            elif all("const" in o or "enum" in o for o in non_null):
                values: list[Any] = []
                for o in non_null:
                    values.extend(o.get("enum", [o.get("const")]))
                out = {**out, "enum": values}
            elif non_null:
                types = {o.get("type") for o in non_null}
                out = {**out, "type": "number" if types <= {"integer", "number"} else "json"}
    if "allOf" in out and len(out["allOf"]) == 1:
        out = {**_resolve(out.pop("allOf")[0], defs), **out}
    if nullable:
        out["__nullable__"] = True
    return out


def schema_fields(schema: Mapping[str, Any]) -> list[FieldSpec]:
    """The form fields of an object JSON Schema, in declaration order.

    Args:
        schema: A JSON Schema of an object (pydantic v2 ``model_json_schema()`` output); ``$defs`` are
            resolved.

    Returns:
        One :class:`FieldSpec` per property.
    """
    defs = schema.get("$defs", schema.get("definitions", {}))
    required = set(schema.get("required", []))
    fields: list[FieldSpec] = []
    for name, raw in (schema.get("properties") or {}).items():
        node = _resolve(raw, defs)
        kind: str
        choices: tuple[Any, ...] = ()
        item_kind = "number"
        if "enum" in node or "const" in node:
            kind = "enum"
            choices = tuple(node.get("enum", [node.get("const")]))
        else:
            typ = node.get("type", "json")
            if isinstance(typ, list):
                non_null = [t for t in typ if t != "null"]
                typ = non_null[0] if len(non_null) == 1 else "json"
            if typ in ("integer", "number", "boolean", "string"):
                kind = typ
            elif typ == "array":
                items = _resolve(node.get("items", {}), defs)
                item_kind = items.get("type", "string") if items.get("type") in ("integer", "number") else "string"
                kind = "list"
            else:
                kind = "json"
        fields.append(
            FieldSpec(
                name=name,
                title=str(node.get("title") or name.replace("_", " ").capitalize()),
                kind=kind,
                default=node.get("default"),
                minimum=node.get("minimum"),
                maximum=node.get("maximum"),
                exclusive_minimum=node.get("exclusiveMinimum"),
                exclusive_maximum=node.get("exclusiveMaximum"),
                choices=choices,
                item_kind=item_kind,
                nullable=bool(node.get("__nullable__")),
                help=str(node.get("description") or ""),
                required=name in required,
            )
        )
    return fields


def _bounds_text(spec: FieldSpec) -> str:
    parts = []
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum}")
    if spec.exclusive_minimum is not None:
        parts.append(f"> {spec.exclusive_minimum}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum}")
    if spec.exclusive_maximum is not None:
        parts.append(f"< {spec.exclusive_maximum}")
    return " and ".join(parts)


def check_value(spec: FieldSpec, value: Any) -> str | None:
    """The message explaining why ``value`` is not allowed for ``spec``, or ``None`` when it is."""
    if value is None:
        return None if spec.nullable or not spec.required else f"The '{spec.name}' parameter is required."
    if spec.kind == "enum" and value not in spec.choices:
        return f"The '{spec.name}' parameter must be one of {list(spec.choices)}. Got {value!r} instead."
    if spec.numeric:
        if spec.kind == "integer" and (isinstance(value, bool) or int(value) != value):
            return f"The '{spec.name}' parameter must be an integer. Got {value!r} instead."
        ok = (
            (spec.minimum is None or value >= spec.minimum)
            and (spec.maximum is None or value <= spec.maximum)
            and (spec.exclusive_minimum is None or value > spec.exclusive_minimum)
            and (spec.exclusive_maximum is None or value < spec.exclusive_maximum)
        )
        if not ok:
            return f"The '{spec.name}' parameter must be {_bounds_text(spec)}. Got {value!r} instead."
    return None


def _convert(kind: str, text: str) -> Any:
    if kind == "integer":
        number = float(text)
        if number != int(number):
            raise ValueError(text)
        return int(number)
    if kind == "number":
        return float(text)
    return text


def parse_sweep(spec: FieldSpec, text: str) -> list[Any]:
    """Parse a comma-separated list of values for ``spec`` and check each one.

    Raises:
        ValueError: naming the parameter and the offending value.
    """
    values: list[Any] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            if spec.kind == "enum":
                matches = [c for c in spec.choices if str(c) == token]
                if not matches:
                    raise ValueError(token)
                value = matches[0]
            elif spec.kind == "boolean":
                value = {"true": True, "false": False}[token.lower()]
            else:
                value = _convert(spec.kind, token)
        except (ValueError, KeyError):
            raise ValueError(f"The '{spec.name}' parameter takes {spec.kind} values. Got {token!r} instead.") from None
        problem = check_value(spec, value)
        if problem:
            raise ValueError(problem)
        values.append(value)
    if not values:
        raise ValueError(f"The '{spec.name}' sweep needs at least one value.")
    return values


def _format_number(spec: FieldSpec) -> str | None:
    if spec.kind == "integer":
        return None
    default = spec.default if isinstance(spec.default, (int, float)) else 0.0
    return "%g" if default == 0 or abs(default) >= 1e-3 else "%.2e"


def _step(spec: FieldSpec) -> float | None:
    """The +/- step of a float field: the order of magnitude of its default, so that a learning rate of 0.001
    steps by 0.001 rather than by Streamlit's 0.01 (one click would otherwise multiply it by eleven)."""
    default = spec.default if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool) else 0
    if not default:
        return None  # Streamlit's own default step (0.01)
    return float(10 ** math.floor(math.log10(abs(default))))


def _within(spec: FieldSpec, value: Any, low: float | None, high: float | None) -> bool:
    """Whether a number input bounded by ``low``/``high`` can show ``value`` (Streamlit refuses, or silently
    resets to its minimum, a value outside them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if spec.kind == "integer" and int(value) != value:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _number_value(spec: FieldSpec, current: Any) -> int | float | None:
    """``current`` in the type of the field's number input (an int for an integer field, a float otherwise)."""
    if current is None:
        return None
    return int(current) if spec.kind == "integer" else float(current)


def render_fields(
    fields: list[FieldSpec],
    *,
    key_prefix: str,
    values: Mapping[str, Any] | None = None,
    allow_sweeps: bool = False,
    container: Any = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Draw one widget per field and return ``(params, errors)``.

    Every widget declares, on every run, the value the server holds for it as its own default
    (:mod:`dashboard.widget_values` says why: a browser drawing it late would otherwise start it at its minimum).
    A number from ``values`` that its input cannot show (outside the schema's bounds, or not a number) is not
    replaced by a nearby allowed one: the field starts empty with an error until the user enters a value.

    Args:
        fields: From :func:`schema_fields`.
        key_prefix: Prefix of every widget key (must be unique per form).
        values: Initial values (e.g. from an uploaded spec); the schema defaults otherwise.
        allow_sweeps: Offer, for numeric and enum fields, a "sweep" box taking several values; a swept
            parameter comes back as a list (the engine expands list-valued defense parameters into rows).
        container: Streamlit container to draw into (defaults to the main area).

    Returns:
        The parameter values the user chose and a ``{name: message}`` dict of invalid inputs (each also
        shown under its widget).
    """
    area = container if container is not None else st
    values = dict(values or {})
    params: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in fields:
        key = f"{key_prefix}.{spec.name}"
        initial = values.get(spec.name, spec.default)
        help_text = spec.help or None
        bounds = _bounds_text(spec)
        if bounds:
            help_text = f"{spec.help} (allowed: {bounds})".strip()
        sweep_key = f"{key}.__sweep__"
        swept = isinstance(initial, list) and spec.kind != "list"
        if allow_sweeps and (spec.numeric or spec.kind == "enum"):
            if swept and sweep_key not in st.session_state:
                st.session_state[sweep_key] = True
            use_sweep = area.checkbox(
                f"Sweep {spec.title.lower()}",
                value=bool(held(sweep_key, False)),
                key=sweep_key,
                help="Try several values (one row each).",
            )
            if use_sweep:
                text_key = f"{key}.__values__"
                if text_key not in st.session_state:
                    st.session_state[text_key] = ", ".join(
                        str(v) for v in (initial if isinstance(initial, list) else [initial]) if v is not None
                    )
                text = area.text_input(
                    f"{spec.title} values (comma-separated)", value=held(text_key, ""), key=text_key, help=help_text
                )
                try:
                    params[spec.name] = parse_sweep(spec, text)
                except ValueError as exc:
                    errors[spec.name] = str(exc)
                    area.error(str(exc))
                continue
            if swept:
                initial = initial[0] if initial else spec.default
        low = spec.minimum if spec.minimum is not None else spec.exclusive_minimum
        high = spec.maximum if spec.maximum is not None else spec.exclusive_maximum
        refused_key = f"{key}.__refused__"
        if key not in st.session_state and initial is not None:
            if spec.numeric and not _within(spec, initial, low, high):
                # Kept aside and shown as an error: the input would otherwise show its minimum instead.
                st.session_state[refused_key] = initial
                initial = None
            st.session_state[key] = initial
        current = held(key)
        value: Any
        if spec.kind == "boolean":
            value = area.checkbox(spec.title, value=bool(current), key=key, help=help_text)
        elif spec.kind == "enum":
            options = list(spec.choices) + ([None] if spec.nullable else [])
            if current not in options:
                st.session_state[key] = current = options[0]
            value = area.selectbox(
                spec.title, options, index=options.index(current), key=key, help=help_text, format_func=str
            )
        elif spec.numeric:
            # An optional number without a default starts empty (None), not at 0.
            if spec.kind == "integer":
                value = area.number_input(
                    spec.title,
                    min_value=int(low) if low is not None else None,
                    max_value=int(high) if high is not None else None,
                    value=_number_value(spec, current),
                    step=1,
                    key=key,
                    help=help_text,
                )
            else:
                value = area.number_input(
                    spec.title,
                    min_value=float(low) if low is not None else None,
                    max_value=float(high) if high is not None else None,
                    value=_number_value(spec, current),
                    step=_step(spec),
                    key=key,
                    help=help_text,
                    format=_format_number(spec),
                )
            if refused_key in st.session_state:
                if value is None:
                    refused = st.session_state[refused_key]
                    errors[spec.name] = (
                        f"The spec gave '{spec.name}' = {refused!r}, which this field cannot take"
                        + (f" (allowed: {bounds})" if bounds else "")
                        + "; enter a value."
                    )
                    area.error(errors[spec.name])
                    continue
                del st.session_state[refused_key]  # the user entered a value of their own
        elif spec.kind == "list":
            text_key = f"{key}.__text__"
            if text_key not in st.session_state:
                st.session_state[text_key] = ", ".join(str(v) for v in (initial or []))
            text = area.text_input(
                f"{spec.title} (comma-separated)", value=held(text_key, ""), key=text_key, help=help_text
            )
            try:
                value = [_convert(spec.item_kind, t.strip()) for t in text.split(",") if t.strip()]
            except ValueError:
                errors[spec.name] = f"The '{spec.name}' parameter takes a list of {spec.item_kind} values."
                area.error(errors[spec.name])
                continue
        elif spec.kind == "json":
            text_key = f"{key}.__json__"
            if text_key not in st.session_state:
                st.session_state[text_key] = json.dumps(initial)
            text = area.text_input(f"{spec.title} (JSON)", value=held(text_key, ""), key=text_key, help=help_text)
            try:
                value = json.loads(text) if text.strip() else None
            except ValueError:
                errors[spec.name] = f"The '{spec.name}' parameter must be valid JSON."
                area.error(errors[spec.name])
                continue
        else:
            value = area.text_input(
                spec.title, value=current if isinstance(current, str) else "", key=key, help=help_text
            )
            if value == "" and spec.nullable:
                value = None
        problem = check_value(spec, value)
        if problem:
            errors[spec.name] = problem
            area.error(problem)
        params[spec.name] = value
    return params, errors
