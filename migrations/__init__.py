"""The Alembic migrations of the study database (installed as ``study_server.migrations``)."""
