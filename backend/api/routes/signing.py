"""Signed reports: the server's public signing key and each assessment's signed bundle (one zip).

An auditor downloads ``GET /assessments/{id}/bundle.zip`` (reports, results, manifest, Ed25519 signature,
public key) and checks it offline with ``amulet verify-report bundle.zip --public-key key.pem``, the key
fetched separately from ``GET /signing-key``: a key obtained apart from the bundle is what proves who signed.
The bundle is built from the stored report files on each request; it is deterministic, so every download
of one assessment has the same bytes and the same SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response, status

from amulet.assess import bundle_bytes
from amulet.assess._signing import load_signing_key
from backend import crud
from backend.api.deps import CurrentToken, SessionDep, SettingsDep
from backend.schemas import SigningKeyPublic

router = APIRouter(tags=["reports"])


@router.get("/signing-key", response_model=SigningKeyPublic)
def signing_key(settings: SettingsDep) -> SigningKeyPublic:
    """The public half of the key this server signs reports with (PEM) and its id; no token needed."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = load_signing_key(settings.resolved_signing_key_path, create=False).public_key()
    except FileNotFoundError:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "No report has been signed on this server yet, so it has no signing key."
        ) from None
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SigningKeyPublic(
        algorithm="Ed25519", key_id=hashlib.sha256(raw).hexdigest()[:16], public_key_pem=pem.decode()
    )


@router.get(
    "/assessments/{assessment_id}/bundle.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The signed bundle."}},
)
def read_bundle(assessment_id: str, session: SessionDep, token: CurrentToken) -> Response:
    """The assessment's signed bundle: every report, the results, the signed manifest and the public key."""
    row = crud.get_assessment(session, assessment_id=assessment_id, project_id=token.project_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Assessment not found.")
    reports = [Path(r.path) for r in crud.list_reports(session, assessment_id=row.id) if r.format == "json"]
    if not reports or not reports[0].is_file():
        code = status.HTTP_409_CONFLICT if row.status in ("queued", "running", "finalizing") else 404
        raise HTTPException(
            code, f"The assessment is {row.status}; its signed bundle exists once reports are rendered."
        )
    try:
        data = bundle_bytes(reports[0].parent)
    except (FileNotFoundError, ValueError) as exc:
        # The stored files changed since the worker signed them: say so instead of serving a broken bundle.
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"The stored reports cannot be bundled: {exc.__class__.__name__}."
        ) from None
    return Response(
        content=data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="amulet-{row.id}-bundle.zip"',
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
        },
    )
