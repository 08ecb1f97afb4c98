"""questionnaires: one row per item answered at a point of the walk

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "questionnaire_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("questionnaire", sa.String(length=24), nullable=False),
        sa.Column("point", sa.String(length=24), nullable=False),
        sa.Column("item", sa.String(length=24), nullable=False),
        sa.Column("value", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_questionnaire_answers_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questionnaire_answers")),
        sa.UniqueConstraint(
            "participant_id",
            "questionnaire",
            "point",
            "item",
            name=op.f("uq_questionnaire_answers_one_per_item"),
        ),
    )
    with op.batch_alter_table("questionnaire_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_questionnaire_answers_participant_id"), ["participant_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("questionnaire_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_questionnaire_answers_participant_id"))

    op.drop_table("questionnaire_answers")
