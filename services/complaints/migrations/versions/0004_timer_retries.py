"""A failed timer waits for its retry in `retry_at`; its due time stays the one it was set for.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from shared.migrations import add_timer_retries, drop_timer_retries

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_timer_retries("complaints")


def downgrade() -> None:
    drop_timer_retries("complaints")
