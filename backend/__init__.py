"""Amulet REST service (FastAPI): intake, assessments, results, reports and API tokens.

Layout: ``main.py`` (app factory), ``api/`` (routers and dependencies), ``core/`` (settings, database,
security, artifact store, queue), ``models.py`` (SQLAlchemy tables), ``schemas.py`` (pydantic bodies),
``crud/`` (every database read and write), ``intake/`` (upload validation), ``planning/`` (from a submitted spec
to a planned assessment), ``cli.py`` and ``demo.py`` (``amulet serve``), ``alembic/`` (migrations).
"""
