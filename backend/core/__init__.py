"""Service infrastructure: settings, database, security, artifact store and task queue."""
