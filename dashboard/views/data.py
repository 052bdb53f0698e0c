"""Models & data page: upload datasets (with a preview to pick label and sensitive columns) and models (an
exported .pt2/.onnx graph of any architecture, or an architecture spec plus weights)."""

from __future__ import annotations

import json

import streamlit as st

from dashboard.client import ApiError
from dashboard.datafiles import guess_label, preview_file, shape_text
from dashboard.state import require_client, show_api_error
from dashboard.widgets import readable_columns

EXPORTED, SPEC_WEIGHTS = "Exported model (.pt2 / .onnx)", "Architecture spec + weights"

client = require_client()
st.title("Models & data")

tab_data, tab_models = st.tabs(["Datasets", "Models"])

with tab_data:
    st.subheader("Upload a dataset")
    st.caption(
        "CSV or Parquet with a label column (and optionally sensitive columns, used by the fairness and "
        "attribute-inference risks), or NPZ with arrays `x`, `y` and optionally `z`. "
        "Encoding and scaling are done by the platform."
    )
    upload = st.file_uploader("Dataset file", type=["csv", "parquet", "npz"], key="data.file")
    file_error = st.empty()
    if upload is not None:
        content = upload.getvalue()
        preview = preview_file(upload.name, content)
        if preview.error:
            file_error.error(preview.error)
        else:
            st.caption(f"{preview.n_rows:,} rows" + (f", {len(preview.columns)} columns" if preview.columns else ""))
            st.dataframe(preview.head, hide_index=True, width="stretch")
            name = st.text_input("Name", value=upload.name.rsplit(".", 1)[0], key="data.name")
            name_error = st.empty()
            label = None
            sensitive: list[str] = []
            label_error = st.empty()
            sensitive_error = st.empty()
            if preview.kind == "tabular":
                guessed = guess_label(preview.columns, preview.distinct, preview.n_rows)
                label = st.selectbox(
                    "Label column",
                    preview.columns,
                    index=preview.columns.index(guessed) if guessed in preview.columns else 0,
                    key="data.label",
                    help="The column the model predicts.",
                )
                label_error = st.empty()
                sensitive = st.multiselect(
                    "Sensitive columns",
                    [c for c in preview.columns if c != label],
                    key="data.sensitive",
                    help="Protected attributes (e.g. race, sex): kept out of the features, used by fairness risks.",
                )
                sensitive_error = st.empty()
            if st.button("Upload dataset", type="primary", key="data.upload"):
                try:
                    created = client.upload_dataset(
                        content=content, filename=upload.name, label=label, sensitive=sensitive, name=name
                    )
                except ApiError as exc:
                    placed = False
                    for field, area in (
                        ("label", label_error),
                        ("sensitive", sensitive_error),
                        ("name", name_error),
                        ("file", file_error),
                    ):
                        if field in exc.field_errors:
                            area.error(exc.field_errors[field])
                            placed = True
                    if not placed:
                        show_api_error(exc)
                else:
                    st.success(f"Uploaded dataset {created.get('name') or upload.name} (id {created.get('id')}).")
                    if created.get("sha256"):
                        st.caption(f"SHA-256 {created['sha256']}")

    st.subheader("Your datasets")
    try:
        datasets = client.list_datasets()
    except ApiError as exc:
        show_api_error(exc)
        datasets = []
    if datasets:
        st.dataframe(
            [
                {
                    "name": d.get("name"),
                    "format": d.get("format"),
                    "label": d.get("label"),
                    "sensitive": ", ".join(d.get("sensitive") or []),
                    "rows": d.get("n_rows"),
                    "columns": d.get("n_columns"),
                    "sha256": (d.get("sha256") or "")[:16],
                    "id": d.get("id"),
                }
                for d in datasets
            ],
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("No uploaded datasets yet.")

    st.subheader("Built-in datasets")
    try:
        builtin = client.list_builtin_datasets()
    except ApiError as exc:
        show_api_error(exc)
        builtin = []
    if builtin:
        st.dataframe(readable_columns(builtin), hide_index=True, width="stretch")

with tab_models:
    st.subheader("Upload a trained model")
    kind = st.radio(
        "Model file",
        [EXPORTED, SPEC_WEIGHTS],
        key="model.kind",
        horizontal=True,
        help="Any PyTorch architecture: export it with `amulet export-model` (torch.export .pt2, or ONNX).",
    )
    if kind == EXPORTED:
        st.caption(
            "A torch.export archive (`.pt2`) or an ONNX model (`.onnx`) of any architecture. It is inspected "
            "without running anything in it (no pickled code, only standard operators) and its input shape and "
            "number of classes are read from the exported signature. From a notebook: "
            "`amulet export-model model.pt2 --entry my_module:build_model --dataset census`."
        )
        graph_file = st.file_uploader("Exported model (.pt2 or .onnx)", type=["pt2", "onnx"], key="model.graph")
        graph_error = st.empty()
        graph_name = st.text_input("Name", key="model.graph_name")
        if st.button("Upload model", type="primary", disabled=graph_file is None, key="model.graph_upload"):
            assert graph_file is not None
            try:
                created = client.upload_graph_model(
                    content=graph_file.getvalue(),
                    filename=graph_file.name,
                    name=graph_name or graph_file.name.rsplit(".", 1)[0],
                )
            except ApiError as exc:
                if "model" in exc.field_errors:
                    graph_error.error(exc.field_errors["model"])
                else:
                    show_api_error(exc)
            else:
                st.success(f"Uploaded model {created.get('name')} (id {created.get('id')}).")
                cols = st.columns(4)
                cols[0].metric("Format", str(created.get("format")))
                cols[1].metric("Input shape", shape_text(created.get("input_shape")))
                cols[2].metric("Classes", str(created.get("num_classes")))
                cols[3].metric("Parameters", f"{int(created.get('num_parameters') or 0):,}")
                if created.get("sha256"):
                    st.caption(f"SHA-256 {created['sha256']}")
    else:
        st.caption(
            "An architecture spec (JSON: registered architecture, its config, input shape and number of classes) "
            "plus weights as safetensors (or a state_dict saved with torch.save). Pickled models are refused: "
            "export them with `amulet export-model`. No model? Choose *Train a baseline from a config* when you "
            "create an assessment."
        )
        spec_file = st.file_uploader("Architecture spec (JSON)", type=["json"], key="model.spec")
        spec_error = st.empty()
        weights_file = st.file_uploader("Weights", type=["safetensors", "pt", "pth", "bin"], key="model.weights")
        weights_error = st.empty()
        model_name = st.text_input("Name", key="model.name")
        if spec_file is not None:
            try:
                st.json(json.loads(spec_file.getvalue()), expanded=False)
            except ValueError as exc:
                spec_error.error(f"The architecture spec is not valid JSON: {exc}")
        if st.button("Upload model", type="primary", disabled=spec_file is None or weights_file is None):
            assert spec_file is not None and weights_file is not None
            try:
                created = client.upload_model(
                    spec=spec_file.getvalue(),
                    weights=weights_file.getvalue(),
                    weights_filename=weights_file.name,
                    name=model_name or spec_file.name.rsplit(".", 1)[0],
                )
            except ApiError as exc:
                placed = False
                for field, area in (("spec", spec_error), ("weights", weights_error)):
                    if field in exc.field_errors:
                        area.error(exc.field_errors[field])
                        placed = True
                if not placed:
                    show_api_error(exc)
            else:
                st.success(f"Uploaded model {created.get('name')} (id {created.get('id')}).")

    st.subheader("Your models")
    try:
        models = client.list_models()
    except ApiError as exc:
        show_api_error(exc)
        models = []
    if models:
        st.dataframe(
            [
                {
                    "name": m.get("name"),
                    "format": m.get("format") or m.get("weights_format"),
                    "architecture": m.get("architecture"),
                    "input shape": shape_text(m.get("input_shape")),
                    "classes": m.get("num_classes"),
                    "parameters": m.get("num_parameters", m.get("n_parameters")),
                    "sha256": (m.get("sha256") or "")[:16],
                    "id": m.get("id"),
                }
                for m in models
            ],
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("No uploaded models yet.")
