"""The dashboard's REST client: the only module of the dashboard that talks HTTP.

Every page goes through :class:`ApiClient`, which wraps the Amulet REST API (``backend/``) with one typed
method per endpoint and turns every failure into an :class:`ApiError` whose message a person can act on:
the API is down, the token is wrong, a field of an upload is invalid (``field_errors`` maps the field name
to the API's message, so a form can show it next to the field it concerns).

Example:
    >>> client = ApiClient("http://127.0.0.1:1", token="t", timeout=0.5)
    >>> try:
    ...     client.health()
    ... except ApiError as exc:
    ...     exc.status_code is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import httpx

__all__ = ["REPORT_FORMATS", "ApiClient", "ApiError"]

#: Report formats the API renders, with their file extension and MIME type.
REPORT_FORMATS: dict[str, tuple[str, str]] = {
    "html": ("html", "text/html"),
    "pdf": ("pdf", "application/pdf"),
    "json": ("json", "application/json"),
    "junit": ("xml", "application/xml"),
}

MSG_UNREACHABLE = (
    "Cannot reach the Amulet API at {url} ({error}). Check the URL, and start the service with `amulet serve` "
    "if it is not running."
)
MSG_UNAUTHORIZED = "The API rejected the token ({detail}). Paste a valid API token (`amulet serve` prints one)."
MSG_NOT_FOUND = "Not found: {detail}"
#: Rows per request when a client method follows a list endpoint's pages (the API's largest page).
PAGE_SIZE = 500


class ApiError(Exception):
    """A failed API call.

    Attributes:
        status_code: HTTP status, or ``None`` when the API could not be reached at all.
        message: Human-readable explanation (what went wrong and what to do).
        field_errors: For validation errors (422), the message of each field, keyed by the field's name
            (the last element of its location, e.g. ``"label"``) and by its dotted location
            (``"body.label"``); empty otherwise.
    """

    def __init__(self, message: str, *, status_code: int | None = None, field_errors: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field_errors = dict(field_errors or {})

    @property
    def unreachable(self) -> bool:
        """True when no HTTP answer came back (connection refused, DNS, timeout)."""
        return self.status_code is None

    @property
    def unauthorized(self) -> bool:
        """True for 401/403 answers (missing, wrong or revoked token)."""
        return self.status_code in (401, 403)


def _detail_text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, Mapping):
        for key in ("message", "msg", "detail", "error"):
            if isinstance(detail.get(key), str):
                return str(detail[key])
    if isinstance(detail, Sequence) and not isinstance(detail, (str, bytes)):
        return "; ".join(_detail_text(d) for d in detail)
    return str(detail)


def _field_errors(detail: Any) -> dict[str, str]:
    """Field messages from a FastAPI-style ``detail`` (list of {loc, msg}) or a {field: message} mapping."""
    errors: dict[str, str] = {}
    items: list[Any]
    if isinstance(detail, Mapping):
        if "loc" in detail or "field" in detail:
            items = [detail]
        elif isinstance(detail.get("errors"), list):
            items = list(detail["errors"])
        else:
            return {}
    elif isinstance(detail, list):
        items = detail
    else:
        return {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        message = str(item.get("msg") or item.get("message") or "invalid value")
        loc = item.get("loc")
        if loc is None and item.get("field") is not None:
            loc = str(item["field"]).split(".")
        if not loc:
            continue
        parts = [str(p) for p in (loc if isinstance(loc, (list, tuple)) else [loc])]
        errors.setdefault(".".join(parts), message)
        named = [p for p in parts if p not in ("body", "query", "path", "form") and not p.isdigit()]
        if named:
            errors.setdefault(named[-1], message)
            errors.setdefault(".".join(named), message)
    return errors


class ApiClient:
    """Typed client of the Amulet REST API.

    Args:
        base_url: Where the API listens, e.g. ``"http://127.0.0.1:8000"``.
        token: API token sent as ``Authorization: Bearer <token>``; ``None`` sends none.
        timeout: Seconds to wait for an answer (uploads and report downloads get four times as long).
        transport: Optional httpx transport (for tests that run the API in-process).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.transport = transport

    # -- plumbing ---------------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        clean_params = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            with httpx.Client(
                base_url=self.base_url, timeout=timeout or self.timeout, transport=self.transport
            ) as http:
                response = http.request(
                    method, path, params=clean_params, json=json, data=data, files=files, headers=headers
                )
        except httpx.InvalidURL as exc:
            raise ApiError(f"The API URL {self.base_url!r} is not a valid http(s) URL ({exc}).") from exc
        except httpx.HTTPError as exc:
            raise ApiError(MSG_UNREACHABLE.format(url=self.base_url, error=type(exc).__name__)) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text.strip() or response.reason_phrase}
        detail = body.get("detail", body) if isinstance(body, Mapping) else body
        text = _detail_text(detail)
        code = response.status_code
        if code in (401, 403):
            message = MSG_UNAUTHORIZED.format(detail=text)
        elif code == 404:
            message = MSG_NOT_FOUND.format(detail=text)
        elif code == 413:
            message = f"The upload is too large: {text}"
        else:
            message = f"{text} (HTTP {code})"
        return ApiError(message, status_code=code, field_errors=_field_errors(detail))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @staticmethod
    def _items(payload: Any) -> list[dict[str, Any]]:
        """A list endpoint's items, whether the API answers a bare list or ``{"items": [...]}``."""
        if isinstance(payload, Mapping):
            for key in ("items", "data", "results"):
                if isinstance(payload.get(key), list):
                    return list(payload[key])
            return []
        return list(payload or [])

    # -- service ----------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health``: database and broker reachability (no token needed)."""
        return dict(self._json("GET", "/health"))

    def catalog(self) -> dict[str, Any]:
        """``GET /catalog``: risks (with headline metrics), attacks and defenses (with parameter schemas)."""
        return dict(self._json("GET", "/catalog"))

    def check_token(self) -> None:
        """Raise :class:`ApiError` unless the token is accepted (reads one assessment)."""
        self._json("GET", "/assessments", params={"limit": 1})

    # -- models and datasets ----------------------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        """``GET /models``: the project's uploaded models."""
        return self._items(self._json("GET", "/models"))

    def upload_model(
        self,
        *,
        spec: bytes,
        weights: bytes,
        weights_filename: str = "model.safetensors",
        name: str = "",
    ) -> dict[str, Any]:
        """``POST /models``: an architecture spec (JSON bytes) plus weights (safetensors or a state_dict)."""
        files = {
            "spec": ("spec.json", spec, "application/json"),
            "weights": (weights_filename, weights, "application/octet-stream"),
        }
        return dict(self._json("POST", "/models", data={"name": name}, files=files, timeout=self.timeout * 4))

    def upload_graph_model(self, *, content: bytes, filename: str, name: str = "") -> dict[str, Any]:
        """``POST /models`` field ``model``: an exported graph of any architecture (``.pt2`` or ``.onnx``).

        The response carries the format, input shape, number of classes, number of parameters and SHA-256.
        """
        files = {"model": (filename, content, "application/octet-stream")}
        return dict(self._json("POST", "/models", data={"name": name}, files=files, timeout=self.timeout * 4))

    def list_datasets(self) -> list[dict[str, Any]]:
        """``GET /datasets``: the project's uploaded datasets."""
        return self._items(self._json("GET", "/datasets"))

    def list_builtin_datasets(self) -> list[dict[str, Any]]:
        """``GET /datasets/builtin``: the built-in datasets (name, modality, description)."""
        payload = self._items(self._json("GET", "/datasets/builtin"))
        return [{"name": d} if isinstance(d, str) else d for d in payload]

    def upload_dataset(
        self,
        *,
        content: bytes,
        filename: str,
        label: str | None = None,
        sensitive: Sequence[str] = (),
        name: str = "",
    ) -> dict[str, Any]:
        """``POST /datasets``: a CSV/Parquet file with its label and sensitive columns, or an NPZ file."""
        data: dict[str, Any] = {"name": name or filename}
        if label:
            data["label"] = label
        if sensitive:
            data["sensitive"] = ",".join(sensitive)
        files = {"file": (filename, content, "application/octet-stream")}
        return dict(self._json("POST", "/datasets", data=data, files=files, timeout=self.timeout * 4))

    # -- assessments ------------------------------------------------------------------------------------
    def create_assessment(self, spec: Mapping[str, Any], *, name: str = "") -> dict[str, Any]:
        """``POST /assessments``: queue an assessment; returns at least its ``id`` and ``status``."""
        body: dict[str, Any] = {"spec": dict(spec)}
        if name:
            body["name"] = name
        return dict(self._json("POST", "/assessments", json=body, timeout=self.timeout * 4))

    def list_assessments(self, *, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """``GET /assessments``: the project's assessments, newest first."""
        return self._items(self._json("GET", "/assessments", params={"status": status, "limit": limit}))

    def get_assessment(self, assessment_id: str) -> dict[str, Any]:
        """``GET /assessments/{id}``: status, progress counts, estimate, ETA, the first errors, events, reports."""
        return dict(self._json("GET", f"/assessments/{assessment_id}"))

    def get_status(self, assessment_id: str, *, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``GET /assessments/{id}/status``: the cheap poll (status, progress counts, ETA, current step).

        Pass the previous answer as ``previous``: its ``etag`` goes out as ``If-None-Match`` and, while nothing
        changed (``304``), ``previous`` comes back with ``not_modified`` set and ``progress.eta_seconds``
        counted down from ``eta_at``. The answer carries its ``etag``.
        """
        headers = {"If-None-Match": str(previous["etag"])} if previous and previous.get("etag") else None
        response = self._request("GET", f"/assessments/{assessment_id}/status", headers=headers)
        if response.status_code == 304 and previous is not None:
            body = dict(previous)
            body["progress"] = dict(body.get("progress") or {})
            eta_at = body.get("eta_at")
            if isinstance(eta_at, str) and body.get("status") in ("running", "finalizing"):
                left = (
                    datetime.fromisoformat(eta_at.replace("Z", "+00:00")) - datetime.now(timezone.utc)
                ).total_seconds()
                body["progress"]["eta_seconds"] = round(left, 1) if left > 0 else None
            body["not_modified"] = True
            return body
        body = dict(response.json())
        body["etag"] = response.headers.get("etag")
        body["not_modified"] = False
        return body

    def _all_pages(self, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint (``{"data": [...], "count": n}``), page after page."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": len(items)})
            data = self._items(page)
            items.extend(data)
            count = page.get("count") if isinstance(page, Mapping) else None
            if not data or len(data) < PAGE_SIZE or (isinstance(count, int) and len(items) >= count):
                return items

    def list_cells(self, assessment_id: str, *, status: str | None = None) -> list[dict[str, Any]]:
        """``GET /assessments/{id}/cells``, every page: each cell's status, seconds, attempts and metrics."""
        return self._all_pages(f"/assessments/{assessment_id}/cells", {"status": status})

    def list_trainings(self, assessment_id: str) -> list[dict[str, Any]]:
        """``GET /assessments/{id}/trainings``, every page: each training's status, seconds and error."""
        return self._all_pages(f"/assessments/{assessment_id}/trainings")

    def cancel_assessment(self, assessment_id: str) -> dict[str, Any]:
        """``POST /assessments/{id}/cancel``."""
        return dict(self._json("POST", f"/assessments/{assessment_id}/cancel") or {})

    def delete_assessment(self, assessment_id: str) -> None:
        """``DELETE /assessments/{id}``: the assessment, its cells and its reports."""
        self._json("DELETE", f"/assessments/{assessment_id}")

    def get_results(self, assessment_id: str) -> dict[str, Any]:
        """The whole ``AssessmentResults`` document (matrix, checks, findings): the JSON report download
        (``GET /assessments/{id}/report.json``)."""
        return dict(self._json("GET", f"/assessments/{assessment_id}/report.json", timeout=self.timeout * 4))

    def download_bundle(self, assessment_id: str) -> bytes:
        """``GET /assessments/{id}/bundle.zip``: the signed bundle (reports, results, manifest, signature, key)."""
        response = self._request("GET", f"/assessments/{assessment_id}/bundle.zip", timeout=self.timeout * 4)
        return response.content

    def download_report(self, assessment_id: str, fmt: str) -> bytes:
        """``GET /assessments/{id}/report.{ext}``: the report file's bytes (``fmt`` in :data:`REPORT_FORMATS`)."""
        if fmt not in REPORT_FORMATS:
            raise ValueError(f"The 'fmt' parameter must be one of {sorted(REPORT_FORMATS)}. Got {fmt!r} instead.")
        ext = REPORT_FORMATS[fmt][0]
        response = self._request("GET", f"/assessments/{assessment_id}/report.{ext}", timeout=self.timeout * 4)
        return response.content
