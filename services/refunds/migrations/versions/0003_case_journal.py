"""The journal of events taken in and queued out, by case: timelines and KPIs of the read API.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from shared.migrations import add_journal, drop_journal

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_journal("refunds")


def downgrade() -> None:
    drop_journal("refunds")
