"""What ``amulet serve --demo`` puts in the database: the demo assessment and a token for its visitor."""

from __future__ import annotations

from sqlalchemy import select

from amulet.cli._demo import DEMO_NAME, demo_spec
from backend import crud
from backend.core.config import Settings
from backend.core.db import DEFAULT_PROJECT, get_sessionmaker
from backend.core.queue import enqueue_assessment
from backend.models import ApiToken, Assessment, Project
from backend.planning import plan_submission

__all__ = ["DEMO_TOKEN_NAME", "mint_demo_token", "seed_demo"]

#: Name of the token ``amulet serve --demo`` mints for the dashboard (a new one replaces it at each start).
DEMO_TOKEN_NAME = "demo (printed by amulet serve --demo)"


def seed_demo(settings: Settings) -> str | None:
    """Queue the demo assessment in the default project unless it exists; returns its id (None if it existed)."""
    with get_sessionmaker(settings)() as session:
        project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        if project is None:
            return None
        exists = session.scalar(
            select(Assessment.id).where(Assessment.project_id == project.id, Assessment.name == DEMO_NAME)
        )
        if exists:
            return None
        spec = demo_spec()
        planned = plan_submission(session, project_id=project.id, spec=spec, name=DEMO_NAME)
        row = crud.create_assessment(
            session,
            project_id=project.id,
            name=DEMO_NAME,
            spec=spec,
            resolved_spec=planned.resolved_spec,
            training_keys=planned.training_keys,
            cells=planned.cells,
        )
        session.commit()
        assessment_id = row.id
    enqueue_assessment(settings, assessment_id)
    return assessment_id


def mint_demo_token(settings: Settings) -> str:
    """A ``submit`` token of the default project for the demo's visitor; returns its value (shown once).

    Enough to look at the demo and launch assessments from the dashboard, not to mint or revoke tokens (the
    admin token is not printed again after first start). The admin is its minter, and the previous demo
    token is revoked, so restarts do not pile up live tokens.
    """
    with get_sessionmaker(settings)() as session:
        project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        if project is None:
            raise RuntimeError("The default project is missing; the database was not initialised.")
        admin = session.scalar(
            select(ApiToken.id).where(ApiToken.is_admin.is_(True), ApiToken.revoked_at.is_(None)).limit(1)
        )
        previous = select(ApiToken.id).where(
            ApiToken.project_id == project.id, ApiToken.name == DEMO_TOKEN_NAME, ApiToken.revoked_at.is_(None)
        )
        for token_id in list(session.scalars(previous)):
            crud.revoke_token(session, token_id=token_id)
        _row, plaintext = crud.create_token(
            session, project_id=project.id, name=DEMO_TOKEN_NAME, scope="submit", minted_by=admin
        )
        session.commit()
    return plaintext
