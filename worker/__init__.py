"""Amulet Celery worker: runs the interaction engine's training and cell functions taken from the broker.

``celery_app.py`` builds the Celery app from the service's configuration; ``tasks.py`` holds the thin tasks;
``jobs.py`` is their front door to the jobs (``trainings.py``, ``cells.py``, ``finalize.py``, ``recovery.py``,
sharing ``plans.py`` and ``progress.py``), which ``supervisor.py`` runs in a child process it can stop.
``cli.py`` adds ``amulet worker`` to the command line: start it with ``amulet worker``.
"""
