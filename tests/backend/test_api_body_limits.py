"""Bounded work (issue 16 audit): a request that is not a multipart upload is capped at
``MAX_JSON_BODY_BYTES`` (1 MiB), far below the upload limit, since parsed JSON takes many times its size in
memory (a 100 MB body of ``[{}, {}, ...]`` is about 2 GB of dicts) and every check runs only after parsing.
Uploads keep the upload limit."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient
from service_testing import census_spec, csv_bytes, upload_dataset

from backend.core.limits import MAX_JSON_BODY_BYTES

JSON = {"Content-Type": "application/json"}


def _many_dicts(n_bytes: int) -> bytes:
    """A spec whose ``defenses`` list is ``n_bytes`` of ``{}``: cheap to send, expensive to parse."""
    head, tail = b'{"spec": {"defenses": [', b"]}}"
    count = (n_bytes - len(head) - len(tail)) // 3
    return head + b",".join([b"{}"] * count) + tail


def _refused(response) -> None:
    assert response.status_code == 413, response.text[:300]
    detail = response.json()["detail"]
    assert detail["field"] == "body"
    assert f"{MAX_JSON_BODY_BYTES:,} bytes" in detail["message"] and "multipart" in detail["message"]


def test_json_body_over_the_cap_is_413_before_parsing(client: TestClient, project_headers) -> None:
    body = _many_dicts(2 * MAX_JSON_BODY_BYTES)
    _refused(client.post("/assessments", content=body, headers={**project_headers, **JSON}))


def test_chunked_json_body_over_the_cap_is_413(client: TestClient, project_headers) -> None:
    body = _many_dicts(2 * MAX_JSON_BODY_BYTES)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    _refused(client.post("/assessments", content=chunks(), headers={**project_headers, **JSON}))


def test_small_json_and_large_uploads_still_pass(client: TestClient, project_headers) -> None:
    accepted = client.post("/assessments", json={"spec": census_spec()}, headers=project_headers)
    assert accepted.status_code == 202, accepted.text
    # a multipart upload twice the JSON cap (the test service's upload limit is 4 MiB) reaches validation
    data = csv_bytes(100_000)
    assert 2 * MAX_JSON_BODY_BYTES < len(data) < 4 * 1024 * 1024
    response = upload_dataset(client, project_headers, data, "big.csv", label="income")
    assert response.status_code == 422, response.text  # its 100,000 rows pass the test service's 20,000
    assert response.json()["detail"]["field"] == "file" and "AMULET_MAX_ROWS" in response.text
