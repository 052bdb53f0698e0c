"""Projects and API tokens: create, find by plaintext or id, list what a token may manage, revoke."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.core.security import generate_token, hash_token, token_display_prefix
from backend.models import (
    ApiToken,
    Project,
    utcnow,
)


def create_project(session: Session, *, name: str) -> Project:
    """Add a project named ``name`` (unique)."""
    project = Project(name=name)
    session.add(project)
    session.flush()
    return project


def get_project_by_name(session: Session, *, name: str) -> Project | None:
    """The project called ``name``, if any."""
    return session.scalar(select(Project).where(Project.name == name))


def create_token(
    session: Session,
    *,
    project_id: str,
    name: str = "",
    is_admin: bool = False,
    scope: str = "submit",
    minted_by: str | None = None,
) -> tuple[ApiToken, str]:
    """Add a token to ``project_id``; returns the row and the plaintext (shown once, stored hashed).

    ``minted_by`` is the id of the token that asked for it: revoking that one revokes this one too.
    """
    plaintext = generate_token()
    token = ApiToken(
        project_id=project_id,
        name=name,
        token_hash=hash_token(plaintext),
        prefix=token_display_prefix(plaintext),
        is_admin=is_admin,
        scope=scope,
        minted_by=minted_by,
    )
    session.add(token)
    session.flush()
    return token, plaintext


def get_token(session: Session, *, plaintext: str) -> ApiToken | None:
    """The live token whose hash matches ``plaintext``: neither it nor any token up its minting chain revoked.

    Revoking a token also revokes what it minted (:func:`revoke_token`); checking the chain here as well
    closes the race of a token minted by one whose revocation commits meanwhile.
    """
    token = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None))
    )
    if token is None or token.minted_by is None:
        return token
    chain = select(ApiToken.id, ApiToken.minted_by, ApiToken.revoked_at).where(ApiToken.id == token.minted_by)
    up = chain.cte("minters", recursive=True)
    up = up.union_all(
        select(ApiToken.id, ApiToken.minted_by, ApiToken.revoked_at).join(up, ApiToken.id == up.c.minted_by)
    )
    revoked_minter = session.scalar(select(up.c.id).where(up.c.revoked_at.is_not(None)).limit(1))
    return None if revoked_minter is not None else token


def get_token_by_id(session: Session, *, token_id: str) -> ApiToken | None:
    """The token ``token_id``, live or revoked (callers check who may see it)."""
    return session.get(ApiToken, token_id)


def _minted_from(root_id: str) -> Any:
    """A recursive CTE of ``root_id`` and every token it minted, transitively (one ``id`` column)."""
    tree = select(ApiToken.id).where(ApiToken.id == root_id).cte("minted_tree", recursive=True)
    return tree.union_all(select(ApiToken.id).join(tree, ApiToken.minted_by == tree.c.id))


def _managed_filter(manager: ApiToken) -> list[Any]:
    """WHERE clauses of the live tokens ``manager`` may manage: every non-admin token for an admin, else
    itself and what it minted, transitively (admin tokens never: they are set by the operator)."""
    where: list[Any] = [ApiToken.revoked_at.is_(None), ApiToken.is_admin.is_(False)]
    if not manager.is_admin:
        tree = _minted_from(manager.id)
        where += [ApiToken.project_id == manager.project_id, ApiToken.id.in_(select(tree.c.id))]
    return where


def list_tokens(
    session: Session, *, manager: ApiToken, limit: int = 100, offset: int = 0
) -> tuple[list[ApiToken], int]:
    """A page of the live tokens ``manager`` may manage (oldest first) and their total count."""
    where = _managed_filter(manager)
    stmt = select(ApiToken).where(*where).order_by(ApiToken.created_at, ApiToken.id).limit(limit).offset(offset)
    total = session.scalar(select(func.count()).select_from(ApiToken).where(*where))
    return list(session.scalars(stmt)), int(total or 0)


def may_manage(session: Session, *, manager: ApiToken, token_id: str) -> bool:
    """Whether ``manager`` may revoke the live token ``token_id`` (see :func:`list_tokens`)."""
    found = session.scalar(select(ApiToken.id).where(ApiToken.id == token_id, *_managed_filter(manager)))
    return found is not None


def revoke_token(session: Session, *, token_id: str) -> int:
    """Revoke ``token_id`` and every live token it minted, transitively; returns how many were revoked.

    The caller checks the right to do so (:func:`may_manage`); admin tokens are never revoked here.
    """
    tree = _minted_from(token_id)
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id.in_(select(tree.c.id)), ApiToken.revoked_at.is_(None), ApiToken.is_admin.is_(False))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
