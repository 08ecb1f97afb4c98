"""explanation visits and drafts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('explanation_visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('from_page', sa.String(length=40), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_explanation_visits_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_explanation_visits'))
    )
    with op.batch_alter_table('explanation_visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_explanation_visits_participant_id'), ['participant_id'], unique=False)

    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('draft', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('draft')

    with op.batch_alter_table('explanation_visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_explanation_visits_participant_id'))

    op.drop_table('explanation_visits')
