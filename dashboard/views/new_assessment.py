"""New assessment page: data, model, defenses (rows), risks (columns), policy and seeds, then launch.

Every parameter form is generated from the catalog's JSON Schemas (``dashboard.forms``); the spec can be
downloaded as YAML (for ``amulet assess`` / ``amulet submit``) and uploaded back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import streamlit as st

from dashboard.assessment_form import (
    BUILTIN,
    DRAFT,
    LOADED,
    TRAIN,
    UPLOADED,
    UPLOADED_MODEL,
    apply_loaded,
    clear_form,
    offered_architectures,
    restore_draft,
    save_draft,
    templates,
    train_schema,
)
from dashboard.client import ApiError
from dashboard.datafiles import model_label
from dashboard.forms import render_fields, schema_fields
from dashboard.policy_editor import policy_editor
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
from dashboard.widget_values import held, held_index, held_selection


def not_offered(what: str, asked: Any, offered: Sequence[Any]) -> None:
    """Warn when the loaded spec asks for something (or some things) this API does not offer: the widget then
    shows another choice, which must not pass unnoticed for the spec's own."""
    missing = [a for a in (asked if isinstance(asked, list) else [asked]) if a is not None and a not in offered]
    if missing:
        st.warning(
            f"The loaded spec asks for {what} {', '.join(f'`{m}`' for m in missing)}, which this API does not "
            "offer: the form shows what it offers instead. Check this choice before launching."
        )


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

restore_draft()
loaded: dict[str, Any] = st.session_state.get(LOADED) or {}
examples = templates()
top = st.columns([3, 1])
if examples:
    with top[0].expander(
        "Start from a template", icon=":material/auto_awesome:", expanded=not st.session_state.get(DRAFT)
    ):
        st.caption("A ready-made assessment from the examples: it fills the whole form, which you can then change.")
        picked = st.selectbox(
            "Template", list(examples), key="new.template", format_func=lambda f: f"{f}: {examples[f]['__title__']}"
        )
        if st.button("Use this template", key="new.template_use"):
            apply_loaded(examples[picked])
            st.rerun()
if top[1].button("Start over", key="new.reset", icon=":material/restart_alt:", help="Clear every field and check."):
    clear_form()
    st.rerun()
with st.expander("Load a spec from YAML", icon=":material/upload_file:"):
    spec_upload = st.file_uploader("Assessment spec (YAML or JSON)", type=["yaml", "yml", "json"], key="new.upload")
    if spec_upload is not None and st.button("Load this spec", key="new.load"):
        try:
            apply_loaded(spec_from_yaml(spec_upload.getvalue()))
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.rerun()

errors_area: dict[str, Any] = {}


name = st.text_input("Name", value=held("new.name", loaded.get("name", "assessment")), key="new.name")

# -- data ---------------------------------------------------------------------------------------------
st.header("Data", divider="gray")
try:
    builtin = [d.get("name") for d in client.list_builtin_datasets()]
    uploaded = client.list_datasets()
except ApiError as exc:
    show_api_error(exc)
    st.stop()
sources = [BUILTIN, UPLOADED]
source = st.radio(
    "Source", sources, index=held_index(sources, "new.data_source"), key="new.data_source", horizontal=True
)
dataset: dict[str, Any] = {}
if source == BUILTIN:
    if builtin:
        dataset["name"] = st.selectbox("Dataset", builtin, index=held_index(builtin, "new.builtin"), key="new.builtin")
        not_offered("built-in dataset", (loaded.get("dataset") or {}).get("name"), builtin)
    else:
        st.warning("The API lists no built-in datasets.")
else:
    if uploaded:
        datasets_by_id = {d["id"]: d for d in uploaded}
        chosen = st.selectbox(
            "Dataset",
            list(datasets_by_id),
            index=held_index(list(datasets_by_id), "new.uploaded_dataset"),
            key="new.uploaded_dataset",
            format_func=lambda i: f"{datasets_by_id[i].get('name')} ({datasets_by_id[i].get('n_rows', '?')} rows)",
        )
        dataset["id"] = chosen
    else:
        st.warning("No uploaded dataset yet.")
        st.page_link("views/data.py", label="Upload one", icon=":material/database:")
size_cols = st.columns(2)
loaded_data = loaded.get("dataset") or {}
for col, size, label in ((size_cols[0], "training_size", "Training rows"), (size_cols[1], "test_size", "Test rows")):
    loaded_size = loaded_data.get(size)
    rows = col.number_input(
        label,
        min_value=0,
        step=100,
        value=int(
            held(f"new.{size}", loaded_size if isinstance(loaded_size, (int, float)) and loaded_size >= 1 else 0)
        ),
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
model_sources = [TRAIN, UPLOADED_MODEL]
model_source = st.radio(
    "Model", model_sources, index=held_index(model_sources, "new.model_source"), key="new.model_source", horizontal=True
)
model: dict[str, Any] = {}
if model_source == TRAIN:
    model_cols = st.columns(3)
    architectures = offered_architectures(catalog)
    arch_names = list(architectures)
    model["architecture"] = model_cols[0].selectbox(
        "Architecture", arch_names, index=held_index(arch_names, "new.architecture"), key="new.architecture"
    )
    capacities = architectures[model["architecture"]]
    model["capacity"] = model_cols[1].selectbox(
        "Capacity", capacities, index=held_index(capacities, "new.capacity"), key="new.capacity"
    )
    loaded_model = loaded.get("model") or {}
    not_offered("architecture", loaded_model.get("architecture"), arch_names)
    if loaded_model.get("architecture") == model["architecture"]:
        not_offered(f"{model['architecture']} capacity", loaded_model.get("capacity"), capacities)
    config_text = model_cols[2].text_input(
        "Architecture options (JSON)",
        value=held("new.model_config", "{}"),
        key="new.model_config",
        help='e.g. {"hidden_layer_sizes": [64]}',
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
            index=held_index(list(models_by_id), "new.uploaded_model"),
            key="new.uploaded_model",
            format_func=lambda i: model_label(models_by_id[i]),
        )
    else:
        st.warning("No uploaded model yet.")
        st.page_link("views/data.py", label="Upload one", icon=":material/database:")
errors_area["model"] = st.empty()

with st.expander("Training", expanded=False):
    training, training_errors = render_fields(
        schema_fields(train_schema(catalog)), key_prefix="new.training", values=loaded.get("training")
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
    default=held_selection(list(defense_info), "new.defenses"),
    key="new.defenses",
    format_func=lambda k: f"{defense_info[k]['name']} ({defense_info[k].get('code', '')})",
    help="Each chosen defense becomes a row; a swept parameter gives one row per value.",
)
not_offered(
    "defense",
    [(r.get("stack") or [r])[0].get("defense") for r in loaded.get("defenses") or [] if len(r.get("stack", [r])) == 1],
    list(defense_info),
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
    default=held_selection(chosen_defenses, "new.stack"),
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
    default=held_selection(with_attacks, "new.risks"),
    key="new.risks",
    format_func=lambda k: f"{risk_info[k]['name']} ({risk_info[k].get('code', '')}, {risk_info[k].get('category')})",
)
loaded_risks = {r.get("risk"): r for r in loaded.get("risks") or []}
not_offered("risk", list(loaded_risks), with_attacks)
risk_entries: list[dict[str, Any]] = []
for key in chosen_risks:
    info = risk_info[key]
    with st.expander(f"{info['name']}", expanded=False):
        st.caption(info.get("description", ""))
        attack_keys = [a for a in info.get("attacks", []) if a in attack_info]
        attack = st.selectbox(
            "Attack",
            attack_keys,
            index=held_index(attack_keys, f"new.attack.{key}"),
            key=f"new.attack.{key}",
            format_func=lambda a: f"{attack_info[a]['name']} ({attack_info[a].get('code', '')})",
        )
        not_offered(f"{info['name']} attack", loaded_risks.get(key, {}).get("attack"), attack_keys)
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
policy = policy_editor(chosen_risks, risk_info, loaded.get("policy") or [])
errors_area["policy"] = st.empty()

# -- seeds --------------------------------------------------------------------------------------------
st.header("Seeds", divider="gray")
seeds_text = st.text_input(
    "Seeds",
    value=held("new.seeds", ", ".join(str(s) for s in loaded.get("seeds") or [0, 1, 2])),
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
summary_cols = st.columns(4)
summary_cols[0].metric("Rows", work["rows"])
summary_cols[1].metric("Trainings", work["trainings"])
summary_cols[2].metric("Cells", work["cells"])
summary_cols[3].metric("Estimated time", format_duration(eta))
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
        clear_form()  # launched: the next visit starts a new assessment
        st.switch_page("views/run.py")
save_draft()
