"""Streamlit AppTest tests of every page of the dashboard, against the real API (no mocks of our code)."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
import yaml
from dashboard_testing import QUICK_SPEC, REPO, Service, finish_with_an_errored_cell, free_port, submit_and_wait
from streamlit.testing.v1 import AppTest

from amulet.assess._display import GREY, strength_label
from dashboard.state import CURRENT_KEY, TOKEN_KEY, URL_KEY

APP = str(REPO / "dashboard" / "app.py")


def app(api: Service | None = None) -> AppTest:
    """The dashboard app, connected to ``api`` when given."""
    at = AppTest.from_file(APP, default_timeout=120)
    if api is not None:
        at.session_state[URL_KEY] = api.url
        at.session_state[TOKEN_KEY] = api.token
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def headers(api: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


# -- connect --------------------------------------------------------------------------------------------


def test_connect_success_remembers_url_and_token(api: Service) -> None:
    at = app().run()
    assert not at.exception
    at.text_input(key="connect.url").input(api.url)
    at.text_input(key="connect.token").input(api.token)
    at.button[0].click().run()
    assert "Connected to" in texts(at.success)
    assert at.session_state[URL_KEY] == api.url
    assert at.session_state[TOKEN_KEY] == api.token


def test_sign_in_survives_a_reload_through_a_handle_not_the_token(api: Service) -> None:
    at = app().run()
    assert "Where do I get a token?" in [e.label for e in at.expander]  # first start: how to get one
    at.text_input(key="connect.url").input(api.url)
    at.text_input(key="connect.token").input(api.token)
    at.button[0].click().run()
    handle = at.query_params.get("s")
    assert handle and api.token not in str(dict(at.query_params))
    # a reload is a new session with the same URL: it comes back connected, on any page
    reloaded = AppTest.from_file(APP, default_timeout=120)
    reloaded.query_params["s"] = handle
    reloaded.run()
    assert reloaded.session_state[URL_KEY] == api.url and reloaded.session_state[TOKEN_KEY] == api.token
    reloaded.switch_page("views/history.py").run()
    assert not reloaded.exception and "Connect to an Amulet API first." not in texts(reloaded.info)
    # Disconnect forgets the handle: the same URL no longer signs in
    at.button(key="connect.disconnect").click().run()
    again = AppTest.from_file(APP, default_timeout=120)
    again.query_params["s"] = handle
    again.run()
    assert URL_KEY not in again.session_state
    # a made-up handle signs nobody in
    forged = AppTest.from_file(APP, default_timeout=120)
    forged.query_params["s"] = "not-a-handle"
    forged.run()
    assert URL_KEY not in forged.session_state


def test_connect_wrong_token_says_so(api: Service) -> None:
    at = app().run()
    at.text_input(key="connect.url").input(api.url)
    at.text_input(key="connect.token").input("not-a-valid-token")
    at.button[0].click().run()
    assert "rejected the token" in texts(at.error)
    assert URL_KEY not in at.session_state


def test_connect_api_down_says_so() -> None:
    at = app().run()
    at.text_input(key="connect.url").input(f"http://127.0.0.1:{free_port()}")
    at.text_input(key="connect.token").input("whatever")
    at.button[0].click().run()
    message = texts(at.error)
    assert "Cannot reach the Amulet API" in message and "amulet serve" in message


def test_pages_ask_to_connect_first() -> None:
    at = open_page(app(), "results")
    assert "Connect to an Amulet API first" in texts(at.info)


# -- models & data --------------------------------------------------------------------------------------


def test_upload_census_csv_with_label_and_sensitive_columns(api: Service, census_csv) -> None:
    at = open_page(app(api), "data")
    at.get("file_uploader")[0].upload(census_csv.name, census_csv.read_bytes(), "text/csv")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="data.label").value == "income"  # guessed from the preview
    at.multiselect(key="data.sensitive").set_value(["race", "sex"])
    at.text_input(key="data.name").input("census small")
    at.button(key="data.upload").click().run()
    assert "Uploaded dataset census small" in texts(at.success), texts(at.error)
    listed = httpx.get(f"{api.url}/datasets", headers=headers(api), timeout=60).json()["data"]
    row = next(d for d in listed if d["name"] == "census small")
    assert row["label"] == "income" and row["sensitive"] == ["race", "sex"] and row["n_rows"] == 1200


def test_upload_error_is_shown_next_to_its_field(api: Service, census_csv) -> None:
    # A label column with a single value is refused by the API (422 naming 'label').
    frame = pd.read_csv(census_csv).head(300)
    frame["constant"] = 1
    at = open_page(app(api), "data")
    at.get("file_uploader")[0].upload("constant.csv", frame.to_csv(index=False).encode(), "text/csv")
    at.run()
    at.selectbox(key="data.label").set_value("constant").run()
    at.button(key="data.upload").click().run()
    assert not at.success
    assert at.error, "the API's validation message should be shown"
    response = httpx.post(
        f"{api.url}/datasets",
        headers=headers(api),
        files={"file": ("constant.csv", frame.to_csv(index=False).encode())},
        data={"label": "constant"},
    )
    assert response.status_code == 422
    assert response.json()["detail"]["message"] in texts(at.error)


def test_builtin_datasets_are_listed(api: Service) -> None:
    at = open_page(app(api), "data")
    # the built-in table is the one with a description column (the models table may follow it)
    table = next(d.value for d in at.dataframe if "description" in d.value.columns)
    names = table["name"].tolist()
    assert "census" in names and "fmnist" in names
    assert not [c for c in table.columns if "_" in c], list(table.columns)  # column names as words


# -- new assessment -------------------------------------------------------------------------------------


def _fill_quick_assessment(at: AppTest) -> AppTest:
    at.text_input(key="new.name").input("dashboard quick")
    at.selectbox(key="new.builtin").set_value("census")  # the API lists its datasets by name
    at.number_input(key="new.training_size").set_value(400)
    at.number_input(key="new.test_size").set_value(200)
    at.multiselect(key="new.defenses").set_value(["adversarial_training"]).run()
    at.multiselect(key="new.risks").set_value(["evasion", "discriminatory_behavior"]).run()
    at.text_input(key="new.seeds").input("0, 1").run()
    return at


def test_forms_are_generated_from_the_catalog_schemas(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    catalog = httpx.get(f"{api.url}/catalog").json()
    schema = next(d for d in catalog["defenses"] if d["key"] == "adversarial_training")["params_schema"]
    for name, prop in schema["properties"].items():
        key = f"new.defense.adversarial_training.{name}"
        widget = at.get("number_input") + at.get("checkbox") + at.get("selectbox") + at.get("text_input")
        match = [w for w in widget if w.key == key]
        assert match, f"no widget for {name}"
        if "default" in prop:
            assert match[0].value == prop["default"]
        if prop.get("type") in ("number", "integer") and "minimum" in prop:
            assert match[0].min == prop["minimum"]
    # Work counts: baseline + 1 defense row, 2 risks, 2 seeds.
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "2" and metrics["Trainings"] == "4" and metrics["Cells"] == "8"


def test_sweep_expands_rows_and_bounds_are_checked(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.checkbox(key="new.defense.adversarial_training.epsilon.__sweep__").check().run()
    at.text_input(key="new.defense.adversarial_training.epsilon.__values__").input("0.05, 0.1, 0.2").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "4" and metrics["Cells"] == "16"
    at.text_input(key="new.defense.adversarial_training.epsilon.__values__").input("0.1, -3").run()
    assert "epsilon" in texts(at.error)
    assert at.button(key="new.launch").disabled


def test_spec_yaml_download_and_upload_round_trip(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    text = at.get("code")[-1].value
    spec = yaml.safe_load(text)
    assert spec["dataset"] == {"name": "census", "training_size": 400, "test_size": 200}
    assert [r["risk"] for r in spec["risks"]] == ["evasion", "discriminatory_behavior"]
    assert spec["seeds"] == [0, 1]
    # Upload it into a fresh session: the form comes back with the same choices.
    spec["name"] = "round trip"
    spec["defenses"][0]["stack"][0]["params"]["epsilon"] = [0.05, 0.1]
    fresh = open_page(app(api), "new_assessment")
    fresh.get("file_uploader")[0].upload("spec.yaml", yaml.safe_dump(spec).encode(), "application/x-yaml")
    fresh.run()
    fresh.button(key="new.load").click().run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert fresh.text_input(key="new.name").value == "round trip"
    assert fresh.multiselect(key="new.risks").value == ["evasion", "discriminatory_behavior"]
    metrics = {m.label: m.value for m in fresh.metric}
    assert metrics["Rows"] == "3"
    again = yaml.safe_load(fresh.get("code")[-1].value)
    assert again["defenses"][0]["stack"][0]["params"]["epsilon"] == [0.05, 0.1]
    assert again["risks"] == spec["risks"]


def test_launch_creates_an_assessment_and_opens_run(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.button(key="new.launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assessment_id = at.session_state[CURRENT_KEY]
    detail = httpx.get(f"{api.url}/assessments/{assessment_id}", headers=headers(api), timeout=60).json()
    assert detail["name"] == "dashboard quick"
    assert detail["n_cells"] == 8 and detail["n_trainings"] == 4
    assert any("dashboard quick" in str(s.value) for s in at.subheader)  # the Run page shows it


def test_policy_checks_are_added_and_removed(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.selectbox(key="new.policy_metric").set_value("evasion.robust_accuracy")
    at.selectbox(key="new.policy_op").set_value(">=")
    at.number_input(key="new.policy_threshold").set_value(20.0)
    at.button(key="new.policy_add").click().run()
    spec = yaml.safe_load(at.get("code")[-1].value)
    assert spec["policy"] == [{"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 20.0, "row": "*"}]
    at.button(key="new.policy_remove.0").click().run()
    assert "policy" not in yaml.safe_load(at.get("code")[-1].value)


def test_policy_checks_go_with_their_risk_and_start_over_clears_everything(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.selectbox(key="new.policy_metric").set_value("discriminatory_behavior.demographic_parity")
    at.number_input(key="new.policy_threshold").set_value(0.2)
    at.button(key="new.policy_add").click().run()
    assert [c["metric"] for c in yaml.safe_load(at.get("code")[-1].value)["policy"]] == [
        "discriminatory_behavior.demographic_parity"
    ]
    # the user goes back and drops the risk: its check goes too (the API would refuse it), and says so
    at.multiselect(key="new.risks").set_value(["evasion"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "policy" not in yaml.safe_load(at.get("code")[-1].value)
    assert "no longer selected" in texts(at.info)
    at.button(key="new.launch").click().run()
    assert not at.exception and not at.error, texts(at.error)
    # Start over: every field and check back to its default
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.selectbox(key="new.policy_metric").set_value("evasion.robust_accuracy")
    at.button(key="new.policy_add").click().run()
    at.button(key="new.reset").click().run()
    spec = yaml.safe_load(at.get("code")[-1].value)
    assert "policy" not in spec and spec["name"] == "assessment" and at.multiselect(key="new.risks").value == []
    assert at.number_input(key="new.training_size").value == 0


def test_the_form_survives_a_visit_to_another_page(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.selectbox(key="new.policy_metric").set_value("evasion.robust_accuracy")
    at.button(key="new.policy_add").click().run()
    before = yaml.safe_load(at.get("code")[-1].value)
    at.switch_page("views/history.py").run()
    at.switch_page("views/new_assessment.py").run()
    assert not at.exception, [e.value for e in at.exception]
    after = yaml.safe_load(at.get("code")[-1].value)
    assert after == before and after["name"] == "dashboard quick" and after["policy"]
    assert isinstance(at.number_input(key="new.training_size").value, int)


def test_a_template_fills_the_form_from_an_example(api: Service) -> None:

    at = open_page(app(api), "new_assessment")
    at.selectbox(key="new.template").set_value("census-quick.yaml")
    at.button(key="new.template_use").click().run()
    assert not at.exception, [e.value for e in at.exception]
    example = yaml.safe_load((REPO / "examples" / "census-quick.yaml").read_text())
    spec = yaml.safe_load(at.get("code")[-1].value)
    assert spec["name"] == example["name"] and spec["seeds"] == example["seeds"]
    assert [r["risk"] for r in spec["risks"]] == [r["risk"] for r in example["risks"]]
    assert spec["dataset"]["training_size"] == example["dataset"]["training_size"]


def test_spec_rejected_by_the_api_is_explained(api: Service) -> None:
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.selectbox(key="new.policy_metric").set_value("evasion.robust_accuracy")
    at.text_input(key="new.policy_row").input("no-such-row")
    at.button(key="new.policy_add").click().run()
    at.button(key="new.launch").click().run()
    assert not at.exception
    assert "no-such-row" in texts(at.error)


def test_launch_preflight_names_the_model_problem_and_queues_nothing(api: Service) -> None:
    """A model config out of bounds is refused by the API's pre-flight; the message appears under Model."""
    before = httpx.get(f"{api.url}/assessments", headers=headers(api), timeout=60).json()["count"]
    at = open_page(app(api), "new_assessment")
    _fill_quick_assessment(at)
    at.text_input(key="new.model_config").input('{"hidden_layer_sizes": [64, 1000000]}').run()
    at.button(key="new.launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = texts(at.error)
    assert "model.config.hidden_layer_sizes" in errors and "at most 65536" in errors
    assert httpx.get(f"{api.url}/assessments", headers=headers(api), timeout=60).json()["count"] == before


# -- run, history ---------------------------------------------------------------------------------------


def _queued(api: Service, name: str) -> str:
    spec = {**QUICK_SPEC, "name": name}
    response = httpx.post(f"{api.url}/assessments", json={"spec": spec}, headers=headers(api), timeout=120)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_run_page_shows_progress_and_cancels(api: Service) -> None:
    assessment_id = _queued(api, "to cancel")
    at = app(api)
    at.session_state[CURRENT_KEY] = assessment_id
    open_page(at, "run")
    assert at.selectbox(key="run.selected").value == assessment_id
    assert any("to cancel" in str(s.value) for s in at.subheader)
    assert at.get("progress"), "a progress bar is shown"
    at.button(key="run.cancel").click().run()
    detail = httpx.get(f"{api.url}/assessments/{assessment_id}", headers=headers(api), timeout=60).json()
    assert detail["status"] == "cancelled"
    assert "cancelled" in texts(at.warning)


def test_history_filters(api: Service) -> None:
    _queued(api, "history alpha")
    _queued(api, "history beta")
    at = open_page(app(api), "history")
    at.text_input(key="history.text").input("history al").run()
    names = at.dataframe[0].value["name"].tolist()
    assert names == ["history alpha"]
    at.multiselect(key="history.status").set_value(["succeeded"]).run()
    assert "No assessment matches" in texts(at.info)


def test_partial_assessment_is_shown_with_its_errors_on_history_run_and_results(api: Service) -> None:
    """An assessment with an errored cell is `partial` (never "succeeded, the matrix is ready") on every page."""
    assessment_id = finish_with_an_errored_cell(api, "history partial")
    detail = httpx.get(f"{api.url}/assessments/{assessment_id}", headers=headers(api), timeout=60).json()
    assert detail["status"] == "partial", detail["errors"]
    # History: the status and the error, and the status filter knows `partial`
    at = open_page(app(api), "history")
    at.multiselect(key="history.status").set_value(["partial"]).run()
    table = at.dataframe[0].value
    assert table["name"].tolist() == ["history partial"]
    assert table["status"].tolist() == ["⚠ partial"]
    assert table["error"].tolist()[0].startswith("partial: 1 of 2 cells errored")
    assert "seed" in table["warnings"].tolist()[0]  # the results' few-seeds warning
    # Run: a warning that names the error, the errored cell, and no success message
    at = app(api)
    at.session_state[CURRENT_KEY] = assessment_id
    open_page(at, "run")
    assert "Finished with errors (partial)" in texts(at.warning)
    assert "time limit exceeded" in texts(at.error)
    assert "The interaction matrix is ready" not in texts(at.success)
    # Results: the partial banner at the top, the utility table before the matrix, the errored cell grey
    at = app(api)
    at.session_state[CURRENT_KEY] = assessment_id
    open_page(at, "results")
    assert at.selectbox(key="results.selected").value == assessment_id
    assert "This assessment is PARTIAL" in texts(at.warning)
    heads = [str(h.value) for h in at.header]
    assert heads.index("Utility") < heads.index("Interaction matrix")
    assert at.dataframe[0].value["row"].tolist() == ["baseline", "outlier"]
    heat = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert heat["text"] == [["error"]] and {c for _, c in heat["colorscale"]} == {GREY}


# -- results, compare (need the worker) -----------------------------------------------------------------


@pytest.mark.integration
def test_results_page_heatmap_and_drill_down(api: Service, finished: list[dict]) -> None:
    assessment_id = finished[0]["id"]
    at = app(api)
    at.session_state[CURRENT_KEY] = assessment_id
    open_page(at, "results")
    assert at.selectbox(key="results.selected").value == assessment_id
    chart = at.get("plotly_chart")
    assert chart, "the heatmap is drawn"
    figure = json.loads(chart[0].proto.spec)
    heat = figure["data"][0]
    assert heat["type"] == "heatmap" and not heat["showscale"]  # each cell in the engine's cell_colour
    assert heat["y"] == ["adversarial_training"]
    assert heat["x"] == ["evasion (pgd)", "discriminatory_behavior (subgroup_metrics)"]
    # Intended cell (adversarial training targets evasion) is outlined.
    assert [s["x0"] for s in figure["layout"]["shapes"]] == [-0.5]
    # Drill-down of the intended cell: per-seed values for both seeds, the threat model, the accuracy cost.
    at.selectbox(key="results.column").set_value("evasion (pgd)").run()
    assert "adversarial_training x evasion (pgd)" in texts(at.subheader)
    per_seed = at.dataframe[2].value  # after the utility table and the drill-down's headline metrics
    assert sorted(set(per_seed["seed"])) == [0, 1]
    assert "Robust accuracy" in set(per_seed["metric"])  # the metric's name, not its key robust_accuracy
    assert "Threat model" in texts(at.markdown)
    labels = [m.label for m in at.metric]
    assert {"Clean accuracy", "Accuracy change", "Majority rate"} <= set(labels)
    # The attack's strength next to the result, in the engine's wording (PGD has no weak-budget floor).
    results = httpx.get(f"{api.url}/assessments/{assessment_id}/report.json", headers=headers(api), timeout=60).json()
    pgd = next(c for c in results["columns"] if c["attack"] == "pgd")
    assert pgd["strength"]["budget"]["steps"] == 3  # the spec's iterations, as run
    assert f"**Attack strength**: {strength_label(pgd)}" in texts(at.markdown)
    assert "WEAK BUDGET" not in texts(at.markdown) and "Weak attack budget" not in texts(at.warning)
    assert "Only 2 seed(s)" in texts(at.warning) or "seeds" in texts(at.warning)
    # Baseline and policy verdict tables.
    assert "Policy verdicts" in texts(at.header)
    verdicts = at.dataframe[-1].value["verdict"].tolist()
    assert len(verdicts) == 2 and all(v.split()[-1] in ("pass", "fail", "inconclusive", "run") for v in verdicts)
    assert [b.label for b in at.get("download_button")] == [
        "HTML report",
        "PDF report",
        "JSON results",
        "JUnit XML",
        "Signed bundle",
    ]


#: LiRA with 4 shadow models: below the engine's floor of 16, so its column is flagged as a weak budget.
WEAK_LIRA_SPEC = {
    "name": "weak lira",
    "dataset": {"name": "census", "training_size": 400, "test_size": 200},
    "training": {"epochs": 1, "batch_size": 128},
    "defenses": [{"defense": "outlier_removal"}],
    "risks": [{"risk": "membership_inference", "attack": "lira", "params": {"num_shadow": 4, "max_members": 100}}],
    "seeds": [0],
}


@pytest.mark.integration
def test_cell_detail_flags_a_weak_attack_budget(api: Service, worker: object) -> None:
    """A real assessment whose LiRA ran with 4 shadow models: the drill-down says how strong the attack was,
    flags the weak budget and says what to raise."""
    weak = submit_and_wait(api, WEAK_LIRA_SPEC)
    results = httpx.get(f"{api.url}/assessments/{weak['id']}/report.json", headers=headers(api), timeout=60).json()
    lira = next(c for c in results["columns"] if c["attack"] == "lira")
    assert lira["strength"]["weak"] and lira["strength"]["budget"]["shadow_models"] == 4
    at = app(api)
    at.session_state[CURRENT_KEY] = weak["id"]
    open_page(at, "results")
    at.selectbox(key="results.column").set_value(lira["label"]).run()
    assert f"outlier_removal x {lira['label']}" in texts(at.subheader)
    assert f"**Attack strength**: {strength_label(lira)}" in texts(at.markdown)
    assert strength_label(lira).endswith("; WEAK BUDGET")
    warnings = texts(at.warning)
    assert "Weak attack budget: this cell is not a finding." in warnings
    assert lira["strength"]["note"] in warnings and "Raise num_shadow to 16." in warnings
    budget = next(t.value for t in at.table if "item" in t.value.columns)  # the "Attack budget as run" table
    assert dict(zip(budget["item"], budget["value"]))["shadow_models"] == "4"


@pytest.mark.integration
def test_compare_page_side_by_side(api: Service, finished: list[dict]) -> None:
    at = app(api)
    open_page(at, "compare")
    assert at.selectbox(key="compare.a").value != at.selectbox(key="compare.b").value  # two runs by default
    at.selectbox(key="compare.a").set_value(finished[0]["id"])
    at.selectbox(key="compare.b").set_value(finished[1]["id"]).run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    for chart in charts:  # labels break before the attack, and the title is not drawn over them
        layout = json.loads(chart.proto.spec)["layout"]
        assert all("<br>(" in t for t in layout["xaxis"]["ticktext"]) and not (layout.get("title") or {}).get("text")
    assert "Both heatmaps share one colour scale" in texts(at.caption)
    table = at.dataframe[2].value  # after the two utility tables
    assert list(table["row"]) == ["adversarial_training", "adversarial_training"]
    assert {"A: change", "B: change", "B - A", "95% CI of B - A", "significant"} <= set(table.columns)
    assert set(table["significant"]) <= {"yes", "no", "untested: under 2 seeds", ""}
    assert "Policy verdicts that changed" in texts(at.header)


def test_history_delete_cancels_and_deletes(api: Service) -> None:
    doomed = [_queued(api, "history doomed 1"), _queued(api, "history doomed 2")]
    keep = _queued(api, "history keep")
    at = open_page(app(api), "history")
    at.multiselect(key="history.pick.0").set_value(doomed).run()
    assert at.button(key="history.delete").disabled  # needs the confirmation
    at.checkbox(key="history.confirm").check().run()
    at.button(key="history.delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Deleted 2 assessment(s)." in texts(at.success), texts(at.error)
    for assessment_id in doomed:
        assert httpx.get(f"{api.url}/assessments/{assessment_id}", headers=headers(api), timeout=60).status_code == 404
    assert httpx.get(f"{api.url}/assessments/{keep}", headers=headers(api), timeout=60).status_code == 200
    names = at.dataframe[0].value["name"].tolist()
    assert "history keep" in names and "history doomed 1" not in names
    # the deleted runs are no longer selected (a fresh selector, no stale chips)
    assert at.multiselect(key="history.pick.1").value == []


def test_history_open_results_switches_page(api: Service) -> None:
    assessment_id = _queued(api, "history open")
    at = open_page(app(api), "history")
    at.multiselect(key="history.pick.0").set_value([assessment_id]).run()
    at.button(key="history.progress").click().run()
    assert at.session_state[CURRENT_KEY] == assessment_id
    assert any("history open" in str(s.value) for s in at.subheader)
