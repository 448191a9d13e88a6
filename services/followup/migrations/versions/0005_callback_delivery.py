"""What the notifier reported of a sent callback's survey invitation: `callbacks.delivery`.

Callbacks sent before it await the notifier's status (read from the start of its topic).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("callbacks", sa.Column("delivery", sa.Text(), nullable=True), schema="followup")
    op.execute("UPDATE followup.callbacks SET delivery = 'awaiting' WHERE status = 'sent'")


def downgrade() -> None:
    op.drop_column("callbacks", "delivery", schema="followup")
