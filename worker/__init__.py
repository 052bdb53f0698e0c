"""Amulet Celery worker: runs the interaction engine's training and cell functions taken from the broker.

``celery_app.py`` builds the Celery app from the one settings object; ``tasks.py`` holds the thin tasks;
``jobs.py`` the engine calls and SQL writes they make. Start it with ``amulet worker``.
"""
