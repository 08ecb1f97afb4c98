"""counterfactual simulation: a pair trial's changed factor and the model's decision on
the unchanged scene

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changed_factor", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("original_decision", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_column("original_decision")
        batch_op.drop_column("changed_factor")
