"""trial design: which study design a trial row answers (forward simulation, verification,
distinction)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    # rows written before this revision are forward-simulation trials, or verification
    # trials, told apart by their answer (a verdict)
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "design",
                sa.String(length=24),
                nullable=False,
                server_default="forward-simulation",
            )
        )
    op.execute(
        "UPDATE trials SET design = 'verification' WHERE prediction IN ('right', 'wrong')"
    )


def downgrade():
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_column("design")
