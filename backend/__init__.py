"""Amulet REST service (FastAPI): intake, assessments, results, reports and API tokens.

Layout: ``main.py`` (app factory), ``api/`` (routers and dependencies), ``core/`` (settings, database,
security, artifact store, queue), ``models.py`` (SQLAlchemy tables), ``schemas.py`` (pydantic bodies),
``crud.py`` (every database write), ``intake.py`` (upload validation), ``alembic/`` (migrations).
"""
