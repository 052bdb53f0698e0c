"""New assessment page: data, model, defenses (rows), risks (columns), policy and seeds, then launch.

Every parameter form is generated from the catalog's JSON Schemas (``dashboard.forms``); the spec can be
downloaded as YAML (for ``amulet assess`` / ``amulet submit``) and uploaded back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard.client import ApiError
from dashboard.datafiles import model_label
from dashboard.forms import render_fields, schema_fields
from dashboard.specs import (
    assemble_spec,
    count_work,
    estimate_seconds,
    format_duration,
    parse_seeds,
    section_of,
    spec_from_yaml,
    spec_to_yaml,
)
from dashboard.state import get_catalog, remember_assessment, require_client, show_api_error

LOADED = "new.loaded"  # the spec uploaded as YAML, whose values pre-fill the form
#: The form's values, kept outside the widgets: Streamlit forgets a widget's value when its page is left, so the
#: form is restored from this draft when the user comes back (cleared by "Start over" and by a launch).
DRAFT = "amulet_new_assessment_draft"
#: Keys of widgets whose value cannot be set (buttons, uploaders): never part of the draft.
_NOT_RESTORABLE = ("new.upload", "new.load", "new.launch", "new.download", "new.policy_add", "new.policy_remove",
                   "new.reset", "new.template_use")  # fmt: skip
#: Example specs offered as templates (the repository's examples/ folder).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUILTIN, UPLOADED = "Built-in dataset", "Uploaded dataset"
TRAIN, UPLOADED_MODEL = "Train a baseline from a config", "Uploaded model"
DEFAULT_ARCHITECTURES = ("linearnet", "cnn", "vgg", "resnet")
OPS = ("<=", "<", ">=", ">")


@st.cache_resource(show_spinner=False)
def _spec_schema() -> dict[str, Any]:
    """The assessment spec's JSON Schema (the training section's form is generated from it)."""
    from amulet.assess._spec import spec_json_schema

    return spec_json_schema()


def _train_schema(catalog: dict[str, Any]) -> dict[str, Any]:
    schema = catalog.get("spec_schema") or _spec_schema()
    defs = schema.get("$defs", {})
    return {**defs.get("TrainConfig", {}), "$defs": defs}


def _clear_form() -> None:
    """Forget every value of the form: widgets, the loaded spec, the policy checks and the draft."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith("new.") and k != "new.upload"]:
        del st.session_state[key]
    st.session_state.pop(DRAFT, None)


def _restore_draft() -> None:
    """Put back the values the widgets lost while the user was on another page."""
    for key, value in (st.session_state.get(DRAFT) or {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def _save_draft() -> None:
    st.session_state[DRAFT] = {
        k: v
        for k, v in st.session_state.items()
        if isinstance(k, str) and k.startswith("new.") and not k.startswith(_NOT_RESTORABLE)
    }


@st.cache_data(show_spinner=False)
def _templates() -> dict[str, dict[str, Any]]:
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


def _apply_loaded(spec: dict[str, Any]) -> None:
    """Reset the form and pre-fill it from an uploaded spec."""
    _clear_form()
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


client = require_client()
try:
    catalog = get_catalog(client)
except ApiError as exc:
    show_api_error(exc)
    st.stop()

st.title("New assessment")
st.caption(
    "Rows are defenses (the undefended baseline is always included), columns are risks. Each cell measures "
    "how much the defense changes the model's susceptibility to the risk."
)

_restore_draft()
loaded: dict[str, Any] = st.session_state.get(LOADED) or {}
templates = _templates()
top = st.columns([3, 1])
if templates:
    with top[0].expander(
        "Start from a template", icon=":material/auto_awesome:", expanded=not st.session_state.get(DRAFT)
    ):
        st.caption("A ready-made assessment from the examples: it fills the whole form, which you can then change.")
        picked = st.selectbox(
            "Template", list(templates), key="new.template", format_func=lambda f: f"{f}: {templates[f]['__title__']}"
        )
        if st.button("Use this template", key="new.template_use"):
            _apply_loaded(templates[picked])
            st.rerun()
if top[1].button("Start over", key="new.reset", icon=":material/restart_alt:", help="Clear every field and check."):
    _clear_form()
    st.rerun()
with st.expander("Load a spec from YAML", icon=":material/upload_file:"):
    spec_upload = st.file_uploader("Assessment spec (YAML or JSON)", type=["yaml", "yml", "json"], key="new.upload")
    if spec_upload is not None and st.button("Load this spec", key="new.load"):
        try:
            _apply_loaded(spec_from_yaml(spec_upload.getvalue()))
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.rerun()

errors_area: dict[str, Any] = {}
name = st.text_input("Name", value=loaded.get("name", "assessment"), key="new.name")

# -- data ---------------------------------------------------------------------------------------------
st.header("Data", divider="gray")
try:
    builtin = [d.get("name") for d in client.list_builtin_datasets()]
    uploaded = client.list_datasets()
except ApiError as exc:
    show_api_error(exc)
    st.stop()
source = st.radio("Source", [BUILTIN, UPLOADED], key="new.data_source", horizontal=True)
dataset: dict[str, Any] = {}
if source == BUILTIN:
    if builtin:
        dataset["name"] = st.selectbox("Dataset", builtin, key="new.builtin")
    else:
        st.warning("The API lists no built-in datasets.")
else:
    if uploaded:
        datasets_by_id = {d["id"]: d for d in uploaded}
        chosen = st.selectbox(
            "Dataset",
            list(datasets_by_id),
            key="new.uploaded_dataset",
            format_func=lambda i: f"{datasets_by_id[i].get('name')} ({datasets_by_id[i].get('n_rows', '?')} rows)",
        )
        dataset["id"] = chosen
    else:
        st.warning("No uploaded dataset yet.")
        st.page_link("views/data.py", label="Upload one", icon=":material/database:")
cols = st.columns(2)
loaded_data = loaded.get("dataset") or {}
for col, size, label in ((cols[0], "training_size", "Training rows"), (cols[1], "test_size", "Test rows")):
    loaded_size = loaded_data.get(size)
    rows = col.number_input(
        label,
        min_value=0,
        step=100,
        value=int(loaded_size) if isinstance(loaded_size, (int, float)) and loaded_size >= 1 else 0,
        key=f"new.{size}",
        help="How many rows of the split to use (a seeded sample); 0 keeps every row.",
    )
    if st.session_state.get(f"new.{size}_note"):
        col.caption(st.session_state[f"new.{size}_note"])
    if rows > 0:
        dataset[size] = int(rows)
errors_area["dataset"] = st.empty()

# -- model --------------------------------------------------------------------------------------------
st.header("Model", divider="gray")
model_source = st.radio("Model", [TRAIN, UPLOADED_MODEL], key="new.model_source", horizontal=True)
model: dict[str, Any] = {}
if model_source == TRAIN:
    cols = st.columns(3)
    architectures = list(catalog.get("architectures") or DEFAULT_ARCHITECTURES)
    arch_names = [a if isinstance(a, str) else a.get("key") for a in architectures]
    model["architecture"] = cols[0].selectbox("Architecture", arch_names, key="new.architecture")
    model["capacity"] = cols[1].selectbox("Capacity", ["m1", "m2", "m3", "m4"], key="new.capacity")
    config_text = cols[2].text_input(
        "Architecture options (JSON)", value="{}", key="new.model_config", help='e.g. {"hidden_layer_sizes": [64]}'
    )
    try:
        config = json.loads(config_text or "{}")
        if config:
            model["config"] = config
    except ValueError:
        st.error("The architecture options must be a JSON object, such as {}.")
else:
    try:
        models = client.list_models()
    except ApiError as exc:
        show_api_error(exc)
        models = []
    if models:
        # A name of its own: a format function may be called again after the script ran on (it reads the name then).
        models_by_id = {m["id"]: m for m in models}
        model["id"] = st.selectbox(
            "Uploaded model",
            list(models_by_id),
            key="new.uploaded_model",
            format_func=lambda i: model_label(models_by_id[i]),
        )
    else:
        st.warning("No uploaded model yet.")
        st.page_link("views/data.py", label="Upload one", icon=":material/database:")
errors_area["model"] = st.empty()

with st.expander("Training", expanded=False):
    training, training_errors = render_fields(
        schema_fields(_train_schema(catalog)), key_prefix="new.training", values=loaded.get("training")
    )
errors_area["training"] = st.empty()

# -- defenses -----------------------------------------------------------------------------------------
st.header("Defenses (rows)", divider="gray")
defense_info = {d["key"]: d for d in catalog.get("defenses", [])}
risk_info = {r["key"]: r for r in catalog.get("risks", [])}
attack_info = {a["key"]: a for a in catalog.get("attacks", [])}
chosen_defenses = st.multiselect(
    "Defenses",
    list(defense_info),
    key="new.defenses",
    format_func=lambda k: f"{defense_info[k]['name']} ({defense_info[k].get('code', '')})",
    help="Each chosen defense becomes a row; a swept parameter gives one row per value.",
)
loaded_params = {
    (r.get("stack") or [r])[0].get("defense"): (r.get("stack") or [r])[0].get("params", {})
    for r in loaded.get("defenses") or []
}
defense_params: dict[str, dict[str, Any]] = {}
form_errors: dict[str, str] = dict(training_errors)
for key in chosen_defenses:
    info = defense_info[key]
    targets = ", ".join(risk_info.get(t, {}).get("name", t) for t in info.get("targets", []))
    with st.expander(f"{info['name']} — targets {targets or 'no risk'}", expanded=False):
        if info.get("summary"):
            st.caption(info["summary"])
        params, errs = render_fields(
            schema_fields(info.get("params_schema", {})),
            key_prefix=f"new.defense.{key}",
            values=loaded_params.get(key),
            allow_sweeps=True,
        )
        defense_params[key] = params
        form_errors.update({f"{key}.{k}": v for k, v in errs.items()})
stack = st.multiselect(
    "Stack (optional)",
    chosen_defenses,
    key="new.stack",
    help="Apply several of the chosen defenses together as one more row (e.g. DP-SGD + adversarial training).",
)
defense_rows: list[dict[str, Any]] = [
    {"stack": [{"defense": key, "params": defense_params.get(key, {})}]} for key in chosen_defenses
]
if len(stack) >= 2:
    defense_rows.append({"stack": [{"defense": key, "params": defense_params.get(key, {})} for key in stack]})
elif len(stack) == 1:
    st.caption("Pick at least two defenses to stack.")
errors_area["defenses"] = st.empty()

# -- risks --------------------------------------------------------------------------------------------
st.header("Risks (columns)", divider="gray")
with_attacks = [k for k, r in risk_info.items() if r.get("attacks")]
chosen_risks = st.multiselect(
    "Risks",
    with_attacks,
    key="new.risks",
    format_func=lambda k: f"{risk_info[k]['name']} ({risk_info[k].get('code', '')}, {risk_info[k].get('category')})",
)
loaded_risks = {r.get("risk"): r for r in loaded.get("risks") or []}
risk_entries: list[dict[str, Any]] = []
for key in chosen_risks:
    info = risk_info[key]
    with st.expander(f"{info['name']}", expanded=False):
        st.caption(info.get("description", ""))
        attack_keys = [a for a in info.get("attacks", []) if a in attack_info]
        attack = st.selectbox(
            "Attack",
            attack_keys,
            key=f"new.attack.{key}",
            format_func=lambda a: f"{attack_info[a]['name']} ({attack_info[a].get('code', '')})",
        )
        threat = attack_info[attack].get("threat_model") or {}
        if threat:
            st.caption(" · ".join(f"**{k}**: {v}" for k, v in threat.items() if v))
        loaded_attack = loaded_risks.get(key, {})
        params, errs = render_fields(
            schema_fields(attack_info[attack].get("params_schema", {})),
            key_prefix=f"new.attack.{key}.{attack}",
            values=loaded_attack.get("params") if loaded_attack.get("attack") in (None, attack) else None,
        )
        form_errors.update({f"{key}.{k}": v for k, v in errs.items()})
        risk_entries.append({"risk": key, "attack": attack, "params": params})
errors_area["risks"] = st.empty()

# -- policy -------------------------------------------------------------------------------------------
st.header("Policy", divider="gray")
st.caption("Thresholds on headline metrics, checked for every matching row; a CI pipeline fails when one fails.")
if "new.policy" not in st.session_state:
    st.session_state["new.policy"] = list(loaded.get("policy") or [])
policy: list[dict[str, Any]] = st.session_state["new.policy"]
# A check on a risk that is no longer chosen would be refused by the API: it goes with its risk.
stale = [c for c in policy if str(c.get("metric", "")).split(".", 1)[0] not in chosen_risks]
if stale:
    policy[:] = [c for c in policy if c not in stale]
    st.info(
        "Removed the policy check(s) on risks that are no longer selected: "
        + ", ".join(f"`{c.get('metric')} {c.get('op')} {c.get('threshold')}`" for c in stale)
    )
metric_choices = [f"{r}.{m['key']}" for r in chosen_risks for m in risk_info[r].get("headline_metrics", [])]
if metric_choices:
    cols = st.columns([3, 1, 1, 2, 1])
    metric = cols[0].selectbox("Metric", metric_choices, key="new.policy_metric")
    op = cols[1].selectbox("Op", OPS, key="new.policy_op")
    threshold = cols[2].number_input("Threshold", value=0.0, key="new.policy_threshold", format="%g")
    row_pattern = cols[3].text_input("Rows", value="*", key="new.policy_row", help="A row name, a glob, or * for all.")
    on = cols[4].selectbox("On", ["value", "delta"], key="new.policy_on")
    if st.button("Add check", key="new.policy_add"):
        check = {"metric": metric, "op": op, "threshold": float(threshold), "row": row_pattern or "*"}
        if on != "value":
            check["on"] = on
        policy.append(check)
else:
    st.caption("Choose risks first.")
for i, check in enumerate(list(policy)):
    cols = st.columns([6, 1])
    cols[0].code(
        f"{check['metric']} {check['op']} {check['threshold']:g}  (rows: {check.get('row', '*')}, "
        f"on {check.get('on', 'value')})",
        language=None,
    )
    if cols[1].button("Remove", key=f"new.policy_remove.{i}"):
        policy.pop(i)
        st.rerun()
errors_area["policy"] = st.empty()

# -- seeds --------------------------------------------------------------------------------------------
st.header("Seeds", divider="gray")
seeds_text = st.text_input(
    "Seeds",
    value=", ".join(str(s) for s in loaded.get("seeds") or [0, 1, 2]),
    key="new.seeds",
    help="Each seed retrains every model; intervals over seeds need at least two.",
)
seeds: list[int] = []
try:
    seeds = parse_seeds(seeds_text)
except ValueError as exc:
    form_errors["seeds"] = str(exc)
    st.error(str(exc))
errors_area["seeds"] = st.empty()

# -- summary and launch -------------------------------------------------------------------------------
spec = assemble_spec(
    name=name,
    description=loaded.get("description", ""),
    dataset=dataset,
    model=model,
    training=training,
    defenses=defense_rows,
    risks=risk_entries,
    policy=policy,
    seeds=seeds,
)
st.header("Summary", divider="gray")
work = count_work(spec, catalog)
try:
    history = client.list_assessments(status="succeeded", limit=20)
except ApiError:
    history = []
eta = estimate_seconds(work, history=history)
cols = st.columns(4)
cols[0].metric("Rows", work["rows"])
cols[1].metric("Trainings", work["trainings"])
cols[2].metric("Cells", work["cells"])
cols[3].metric("Estimated time", format_duration(eta))
st.download_button(
    "Download spec (YAML)",
    spec_to_yaml(spec),
    file_name=f"{(name or 'assessment').replace(' ', '_')}.yaml",
    mime="application/x-yaml",
    key="new.download",
    icon=":material/download:",
)
with st.expander("Spec preview"):
    st.code(spec_to_yaml(spec), language="yaml")

problems = []
if not risk_entries:
    problems.append("Choose at least one risk.")
if not dataset.get("name") and not dataset.get("id"):
    problems.append("Choose a dataset.")
if form_errors:
    problems.append(f"Fix the invalid parameters above: {', '.join(f'`{k}`' for k in sorted(form_errors))}.")
for problem in problems:
    st.warning(problem)
if st.button("Launch assessment", type="primary", disabled=bool(problems), key="new.launch"):
    try:
        created = client.create_assessment(spec, name=name)
    except ApiError as exc:
        by_section: dict[str, list[str]] = {}
        for path, message in exc.field_errors.items():
            if "." in path or "[" in path or path in errors_area:
                by_section.setdefault(section_of(path), []).append(f"`{path}`: {message}")
        shown = False
        for section, messages in by_section.items():
            if section in errors_area:
                errors_area[section].error("\n\n".join(sorted(set(messages))))
                shown = True
        st.error(exc.message if not shown else "The API rejected the spec; see the messages above.")
    else:
        remember_assessment(created["id"])
        st.session_state["run.just_launched"] = created["id"]
        _clear_form()  # launched: the next visit starts a new assessment
        st.switch_page("views/run.py")
_save_draft()
