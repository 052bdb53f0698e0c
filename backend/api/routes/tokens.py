"""API tokens (``/tokens``) and projects (``/projects``, admin only)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend import crud
from backend.api.deps import AdminToken, CurrentToken, SessionDep
from backend.schemas import ProjectCreate, ProjectCreated, TokenCreate, TokenCreated, TokenPublic, TokensPublic

router = APIRouter(tags=["tokens"])


@router.get("/tokens", response_model=TokensPublic)
def list_tokens(session: SessionDep, token: CurrentToken) -> TokensPublic:
    """The live tokens of the caller's project (values are never shown again)."""
    rows = crud.list_tokens(session, project_id=token.project_id)
    return TokensPublic(data=[TokenPublic.model_validate(r) for r in rows], count=len(rows))


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, session: SessionDep, token: CurrentToken) -> TokenCreated:
    """A new (non-admin) token for the caller's project; its value is in this answer only."""
    row, plaintext = crud.create_token(session, project_id=token.project_id, name=body.name)
    session.commit()
    return TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=plaintext, project_id=row.project_id)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, session: SessionDep, token: CurrentToken) -> None:
    """Revoke a token of the caller's project (404 for any other id)."""
    if not crud.revoke_token(session, project_id=token.project_id, token_id=token_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Token not found.")
    session.commit()


@router.post("/projects", response_model=ProjectCreated, status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, session: SessionDep, admin: AdminToken) -> ProjectCreated:
    """A new project with its first token (admin token only); 409 when the name is taken."""
    if crud.get_project_by_name(session, name=body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"A project named {body.name!r} already exists.")
    project = crud.create_project(session, name=body.name)
    row, plaintext = crud.create_token(session, project_id=project.id, name=f"{body.name} (first token)")
    session.commit()
    created = TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=plaintext, project_id=project.id)
    return ProjectCreated(id=project.id, name=project.name, token=created)
