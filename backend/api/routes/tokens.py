"""API tokens (``/tokens``) and projects (``/projects``, admin only).

Scopes (``backend.core.security.SCOPES``): ``read`` answers GET requests; ``submit`` adds uploads,
submissions, cancels and deletes of the project's models, datasets and assessments; ``manage`` adds minting,
listing and revoking tokens. The admin token holds every scope, creates projects and mints for any project.

A token mints at most its own scope, and is recorded as the minter: revoking a token revokes everything it
minted, transitively, so revoking a leaked token also evicts whatever it handed out. A ``manage`` token
manages itself and what it minted; the admin manages every project token. No API call revokes an admin
token: it is the operator's (``AMULET_ADMIN_TOKEN``), and start-up restores it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from backend import crud
from backend.api.deps import AdminToken, LimitQuery, ManageToken, OffsetQuery, SessionDep, scope_error
from backend.core.security import scope_allows
from backend.models import Project
from backend.schemas import (
    ErrorResponse,
    ProjectCreate,
    ProjectCreated,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    TokensPublic,
)

router = APIRouter(tags=["tokens"])

_REFUSALS: dict[int | str, dict[str, object]] = {
    403: {
        "model": ErrorResponse,
        "description": "The caller's token lacks the scope the operation needs, or may not manage that token.",
    },
    404: {"model": ErrorResponse, "description": "No such live token (or project) visible to the caller."},
}


@router.get("/tokens", response_model=TokensPublic, responses={403: _REFUSALS[403]})
def list_tokens(
    session: SessionDep, token: ManageToken, limit: LimitQuery = 100, offset: OffsetQuery = 0
) -> TokensPublic:
    """The live tokens the caller may manage (itself and what it minted; every project token for the admin).

    Values are never shown again; ``count`` is the total, ``limit``/``offset`` page through it.
    """
    rows, total = crud.list_tokens(session, manager=token, limit=limit, offset=offset)
    return TokensPublic(data=[TokenPublic.model_validate(r) for r in rows], count=total)


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses=_REFUSALS,
)
def create_token(body: TokenCreate, session: SessionDep, token: ManageToken) -> TokenCreated:
    """Mint a token of at most the caller's scope; its value is in this answer only.

    The new token belongs to the caller's project (the admin may name another ``project_id``) and is revoked
    with the caller.
    """
    if not scope_allows(token.effective_scope, body.scope):
        raise scope_error(token, body.scope, f"Minting a '{body.scope}' token")
    project_id = token.project_id
    if body.project_id is not None and body.project_id != token.project_id:
        if not token.is_admin:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "Only the admin token mints tokens for another project; leave 'project_id' out to mint one for "
                "this token's project.",
            )
        if session.scalar(select(Project.id).where(Project.id == body.project_id)) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Project {body.project_id!r} not found.")
        project_id = body.project_id
    row, plaintext = crud.create_token(
        session, project_id=project_id, name=body.name, scope=body.scope, minted_by=token.id
    )
    session.commit()
    return TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=plaintext)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_REFUSALS)
def revoke_token(token_id: str, session: SessionDep, token: ManageToken) -> None:
    """Revoke a token and every token it minted, transitively.

    403 for an admin token (never revocable through the API) and for a token of the caller's project that
    the caller did not mint; 404 for an unknown, revoked or other project's token.
    """
    target = crud.get_token_by_id(session, token_id=token_id)
    if target is None or target.revoked_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Token not found.")
    if target.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "The admin token cannot be revoked through the API: it comes from the AMULET_ADMIN_TOKEN setting "
            "(or was generated on first start) and is restored at every start. Change the setting and restart "
            "to replace it.",
        )
    if not token.is_admin and target.project_id != token.project_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Token not found.")
    if not crud.may_manage(session, manager=token, token_id=target.id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "A 'manage' token revokes only itself and the tokens it minted (directly or through them); ask the "
            "holder of the token that minted this one, or the admin.",
        )
    crud.revoke_token(session, token_id=target.id)
    session.commit()


@router.post("/projects", response_model=ProjectCreated, status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, session: SessionDep, admin: AdminToken) -> ProjectCreated:
    """A new project with its first token, a ``manage`` one minted by the admin (admin token only); 409 when
    the name is taken."""
    if crud.get_project_by_name(session, name=body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"A project named {body.name!r} already exists.")
    project = crud.create_project(session, name=body.name)
    first = f"{body.name[:186]} (first token)"  # at most 200 characters, what the name column holds
    row, plaintext = crud.create_token(session, project_id=project.id, name=first, scope="manage", minted_by=admin.id)
    session.commit()
    created = TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=plaintext)
    return ProjectCreated(id=project.id, name=project.name, token=created)
