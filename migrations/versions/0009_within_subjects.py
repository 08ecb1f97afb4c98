"""within subjects: a participant's group, order and conditions in the order of their
blocks; each trial's condition and block position (period)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("within_group", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("within_order", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("condition_order", sa.Text(), nullable=True))
    # the trials written before this revision are between subjects: their participant's
    # condition, in the one block of the walk
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("condition", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("period", sa.Integer(), nullable=False, server_default="1")
        )
    op.execute(
        "UPDATE trials SET condition = (SELECT participants.condition FROM participants "
        "WHERE participants.id = trials.participant_id)"
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.alter_column("condition", existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_constraint("uq_trials_participant_id_phase_position", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_trials_participant_id_period_phase_position"),
            ["participant_id", "period", "phase", "position"],
        )


def downgrade():
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_constraint("uq_trials_participant_id_period_phase_position", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_trials_participant_id_phase_position"),
            ["participant_id", "phase", "position"],
        )
        batch_op.drop_column("period")
        batch_op.drop_column("condition")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("condition_order")
        batch_op.drop_column("within_order")
        batch_op.drop_column("within_group")
