"""The Alembic migrations build exactly the schema the models describe, and go back down."""

from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from server_helpers import make_app
from sqlalchemy import inspect


def test_migrations_match_the_models(app):
    from study_server.extensions import db

    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_the_latest_migration_goes_down_and_up_again(bundle_dir, tmp_path):
    from study_server.extensions import db

    app = make_app(bundle_dir, f"sqlite:///{tmp_path / 'm.sqlite'}")
    with app.app_context():
        flask_migrate.downgrade(revision="0001")
        assert "explanation_visits" not in inspect(db.engine).get_table_names()
        flask_migrate.upgrade()
        assert "explanation_visits" in inspect(db.engine).get_table_names()
        db.engine.dispose()


def test_0006_adds_the_questionnaire_answers_table_and_goes_down_again(app):
    """On SQLite and PostgreSQL: one row per participant, questionnaire, point and item."""
    from study_server.extensions import db

    with app.app_context():
        flask_migrate.downgrade(revision="0005")
        assert "questionnaire_answers" not in inspect(db.engine).get_table_names()
        flask_migrate.upgrade()
        unique = inspect(db.engine).get_unique_constraints("questionnaire_answers")
        assert [(u["name"], u["column_names"]) for u in unique] == [
            (
                "uq_questionnaire_answers_one_per_item",
                ["participant_id", "questionnaire", "point", "item"],
            )
        ]
        db.engine.dispose()
