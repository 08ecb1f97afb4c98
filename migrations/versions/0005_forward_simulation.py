"""forward simulation: a participant's trial order, one row per trial

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 20:30:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trial_order", sa.Text(), nullable=True))

    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("scene_index", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("prediction", sa.String(length=16), nullable=False),
        sa.Column("model_decision", sa.String(length=16), nullable=False),
        sa.Column("true_label", sa.String(length=16), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=True),
        sa.Column("response_ms", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_trials_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint(
            "participant_id",
            "phase",
            "position",
            name=op.f("uq_trials_participant_id_phase_position"),
        ),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trials_participant_id"), ["participant_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trials_participant_id"))

    op.drop_table("trials")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("trial_order")
