"""A failed timer waits for its retry in `retry_at`; its due time stays the one it was set for.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from shared.migrations import add_timer_retries, drop_timer_retries

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_timer_retries("notifier")


def downgrade() -> None:
    drop_timer_retries("notifier")
