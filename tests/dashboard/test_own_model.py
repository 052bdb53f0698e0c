"""The dashboard with an exported model of any architecture: the Models & data page uploads a ``.pt2``
(exported in the test from a small torch module) and shows its input shape and parameter count, a hostile
file's refusal is shown next to the field, and the New assessment page offers the uploaded model.

Streamlit AppTest against the real API (no mocks of our code).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from dashboard_testing import REPO, Service
from streamlit.testing.v1 import AppTest

from dashboard.state import CURRENT_KEY, TOKEN_KEY, URL_KEY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from graph_models import custom_op_pt2, n_parameters, pt2_file, residual_mlp

APP = str(REPO / "dashboard" / "app.py")


def _page(api: Service, page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[URL_KEY] = api.url
    at.session_state[TOKEN_KEY] = api.token
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _choose(at: AppTest, key: str, name: str) -> None:
    """Pick the option of select box ``key`` whose label starts with ``name`` (labels are formatted)."""
    box = at.selectbox(key=key)
    box.select_index(next(i for i, label in enumerate(box.options) if label.startswith(name))).run()


def _upload_graph(at: AppTest, path: Path, name: str) -> AppTest:
    uploader = next(u for u in at.get("file_uploader") if u.proto.label.startswith("Exported model"))
    uploader.upload(path.name, path.read_bytes(), "application/octet-stream")
    at.run()
    at.text_input(key="model.graph_name").input(name)
    at.button(key="model.graph_upload").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_upload_pt2_shows_input_shape_and_parameters(api: Service, tmp_path: Path) -> None:
    at = _page(api, "data")
    path = pt2_file(tmp_path, n_features=9, n_classes=3, seed=3)
    _upload_graph(at, path, "resmlp nine")
    assert "Uploaded model resmlp nine" in _texts(at.success), _texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    expected = n_parameters(residual_mlp(9, 3, seed=3))
    assert metrics == {"Format": "pt2", "Input shape": "[9]", "Classes": "3", "Parameters": f"{expected:,}"}
    listed = httpx.get(f"{api.url}/models", headers={"Authorization": f"Bearer {api.token}"}, timeout=60).json()
    row = next(m for m in listed["data"] if m["name"] == "resmlp nine")
    assert (row["format"], row["input_shape"], row["num_parameters"]) == ("pt2", [9], expected)
    # the models table shows the input shape and the parameter count
    table = at.dataframe[-1].value
    shown = table.loc[table["name"] == "resmlp nine"].iloc[0]
    assert (shown["input shape"], shown["parameters"], shown["format"]) == ("[9]", expected, "pt2")
    # the assessment form offers it, named with its format, input shape, classes and parameter count
    form = _page(api, "new_assessment")
    form.radio(key="new.model_source").set_value("Uploaded model").run()
    picker = form.selectbox(key="new.uploaded_model")
    assert f"resmlp nine (pt2, input [9], 3 classes, {expected:,} parameters)" in picker.options


def test_hostile_pt2_refusal_is_shown_next_to_the_field(api: Service, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-dashboard"
    at = _page(api, "data")
    _upload_graph(at, custom_op_pt2(tmp_path, marker), "hostile")
    assert not at.success
    message = _texts(at.error)
    assert "amulet_canary" in message and "amulet export-model" in message
    assert not marker.exists()


def test_launch_with_an_uploaded_pt2_on_an_uploaded_csv(api: Service, census_csv: Path, tmp_path: Path) -> None:
    """The New assessment form with the uploaded dataset and an uploaded .pt2 exported for its features: the
    API accepts it (pre-flight against the dataset passes) and the Run page opens."""
    auth = {"Authorization": f"Bearer {api.token}"}
    dataset = httpx.post(
        f"{api.url}/datasets",
        files={"file": (census_csv.name, census_csv.read_bytes())},
        data={"name": "census apptest", "label": "income", "sensitive": "race,sex"},
        headers=auth,
        timeout=120,
    ).json()
    n = dataset["summary"]["num_features"]
    path = pt2_file(tmp_path, n_features=n, seed=4)
    model = httpx.post(
        f"{api.url}/models", files={"model": (path.name, path.read_bytes())}, data={"name": "own pt2"}, headers=auth
    ).json()
    at = _page(api, "new_assessment")
    at.text_input(key="new.name").input("own model apptest")
    at.radio(key="new.data_source").set_value("Uploaded dataset").run()
    _choose(at, "new.uploaded_dataset", "census apptest")
    at.number_input(key="new.training_size").set_value(300)
    at.number_input(key="new.test_size").set_value(200)
    at.radio(key="new.model_source").set_value("Uploaded model").run()
    _choose(at, "new.uploaded_model", "own pt2")
    at.multiselect(key="new.defenses").set_value(["outlier_removal"]).run()
    at.multiselect(key="new.risks").set_value(["evasion"]).run()
    at.text_input(key="new.seeds").input("0").run()
    at.button(key="new.launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert CURRENT_KEY in at.session_state, _texts(at.error)
    detail = httpx.get(f"{api.url}/assessments/{at.session_state[CURRENT_KEY]}", headers=auth, timeout=60).json()
    assert detail["spec"]["model"] == {"id": model["id"]} and detail["n_cells"] == 2
    httpx.post(f"{api.url}/assessments/{detail['id']}/cancel", headers=auth, timeout=60)  # no worker here
