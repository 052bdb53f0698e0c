"""The New-assessment form's state outside its widgets: the draft that survives a page switch, the spec a
template or an uploaded YAML pre-fills the form with, and clearing it all.

The page (``dashboard/views/new_assessment.py``) draws the widgets; everything here reads and writes
``st.session_state`` under the form's ``new.`` keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from amulet.assess import spec_json_schema
from dashboard.specs import spec_from_yaml

__all__ = [
    "BUILTIN",
    "DRAFT",
    "LOADED",
    "TRAIN",
    "UPLOADED",
    "UPLOADED_MODEL",
    "apply_loaded",
    "clear_form",
    "offered_architectures",
    "restore_draft",
    "save_draft",
    "templates",
    "train_schema",
]

LOADED = "new.loaded"  # the spec uploaded as YAML, whose values pre-fill the form
#: The form's values, kept outside the widgets: Streamlit forgets a widget's value when its page is left, so the
#: form is restored from this draft when the user comes back (cleared by "Start over" and by a launch).
DRAFT = "amulet_new_assessment_draft"
#: Keys of widgets whose value cannot be set (buttons, uploaders): never part of the draft.
_NOT_RESTORABLE = ("new.upload", "new.load", "new.launch", "new.download", "new.policy_add", "new.policy_remove",
                   "new.reset", "new.template_use")  # fmt: skip
#: Example specs offered as templates (the repository's examples/ folder).
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUILTIN, UPLOADED = "Built-in dataset", "Uploaded dataset"
TRAIN, UPLOADED_MODEL = "Train a baseline from a config", "Uploaded model"
#: What an API whose catalog lists no architectures (one that predates the list) trains.
_OLDER_API_ARCHITECTURES = ("linearnet", "cnn", "vgg", "resnet")
_OLDER_API_CAPACITIES = ("m1", "m2", "m3", "m4")


@st.cache_resource(show_spinner=False)
def _spec_schema() -> dict[str, Any]:
    """The assessment spec's JSON Schema (the training section's form is generated from it)."""
    return spec_json_schema()


def train_schema(catalog: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the spec's training section, from the API's catalog (this package's own schema when
    the catalog does not carry it)."""
    schema = catalog.get("spec_schema") or _spec_schema()
    defs = schema.get("$defs", {})
    return {**defs.get("TrainConfig", {}), "$defs": defs}


def offered_architectures(catalog: dict[str, Any]) -> dict[str, list[str]]:
    """The architectures the API trains, each with its capacities, from its catalog (``{"name", "capacities"}``
    entries, or plain names)."""
    out: dict[str, list[str]] = {}
    for entry in catalog.get("architectures") or _OLDER_API_ARCHITECTURES:
        if isinstance(entry, str):
            out[entry] = list(_OLDER_API_CAPACITIES)
        else:
            name = str(entry.get("name") or entry.get("key"))
            out[name] = list(entry.get("capacities") or _OLDER_API_CAPACITIES)
    return out


def clear_form() -> None:
    """Forget every value of the form: widgets, the loaded spec, the policy checks and the draft."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith("new.") and k != "new.upload"]:
        del st.session_state[key]
    st.session_state.pop(DRAFT, None)


def restore_draft() -> None:
    """Put back the values the widgets lost while the user was on another page."""
    for key, value in (st.session_state.get(DRAFT) or {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def save_draft() -> None:
    """Keep the form's current values as the draft (called at the end of every run of the page)."""
    st.session_state[DRAFT] = {
        k: v
        for k, v in st.session_state.items()
        if isinstance(k, str) and k.startswith("new.") and not k.startswith(_NOT_RESTORABLE)
    }


@st.cache_data(show_spinner=False)
def templates() -> dict[str, dict[str, Any]]:
    """The example specs, by file name (each one's first comment line says what it is); read once per
    dashboard process, not on every rerun of the page."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        content = path.read_bytes()
        try:
            spec = spec_from_yaml(content)
        except ValueError:
            continue  # an example the dashboard cannot read is not offered
        first = content.decode("utf-8").splitlines()[0] if content else ""
        spec["__title__"] = first.lstrip("# ").strip() or spec.get("name", path.stem)
        out[path.name] = spec
    return out


def apply_loaded(spec: dict[str, Any]) -> None:
    """Reset the form and pre-fill it from a spec (a template or an uploaded YAML)."""
    clear_form()
    spec = {k: v for k, v in spec.items() if k != "__title__"}
    st.session_state[LOADED] = spec
    st.session_state["new.name"] = spec.get("name", "assessment")
    data = spec.get("dataset") or {}
    if data.get("name"):
        st.session_state["new.data_source"] = BUILTIN
        st.session_state["new.builtin"] = data["name"]
    else:
        st.session_state["new.data_source"] = UPLOADED
    for size in ("training_size", "test_size"):
        value = data.get(size)
        if value is not None:
            # The form counts rows; a fraction in a spec (0.5 = half the split) becomes that many rows at launch
            # only through YAML, so it is shown as "every row" with a note.
            st.session_state[f"new.{size}"] = int(value) if value >= 1 else 0
            if 0 < value < 1:
                st.session_state[f"new.{size}_note"] = (
                    f"The loaded spec asked for a fraction ({value:g}) of the split; the form counts rows. "
                    "Enter a number of rows, or leave 0 for every row."
                )
    model = spec.get("model") or {}
    st.session_state["new.model_source"] = UPLOADED_MODEL if model.get("weights") or model.get("id") else TRAIN
    st.session_state["new.architecture"] = model.get("architecture", "linearnet")
    st.session_state["new.capacity"] = model.get("capacity", "m1")
    st.session_state["new.model_config"] = json.dumps(model.get("config") or {})
    single = [r["stack"][0] if "stack" in r else r for r in spec.get("defenses") or [] if len(r.get("stack", [r])) == 1]
    st.session_state["new.defenses"] = [e["defense"] for e in single]
    stacks = [r for r in spec.get("defenses") or [] if len(r.get("stack", [])) > 1]
    if stacks:
        st.session_state["new.stack"] = [e["defense"] for e in stacks[0]["stack"]]
    st.session_state["new.risks"] = [r["risk"] for r in spec.get("risks") or []]
    for r in spec.get("risks") or []:
        if r.get("attack"):
            st.session_state[f"new.attack.{r['risk']}"] = r["attack"]
    st.session_state["new.policy"] = list(spec.get("policy") or [])
    st.session_state["new.seeds"] = ", ".join(str(s) for s in spec.get("seeds") or [0, 1, 2])
