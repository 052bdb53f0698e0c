"""assessment heartbeat lease and the cell-dispatch claim

Revision ID: 0003_assessment_lease
Revises: 0002_token_scopes
Create Date: 2026-12-07 04:00:00

``alive_until``: the lease a worker renews while it runs a job of the assessment; an active assessment
whose lease ran out shows as ``stalled`` and is resumed by a worker's recovery sweep. ``cells_dispatched_at``:
the atomic claim of the task that queues the cells once every training has settled (the chords that did it
before left Celery ``chord_unlock`` tasks retrying forever after a killed worker). Existing rows get NULL for
both: no lease, and cells not yet claimed (a resumed assessment queues its pending cells again, which is
safe since finished cells are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.models

revision: str = "0003_assessment_lease"
down_revision: str | None = "0002_token_scopes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alive_until", backend.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cells_dispatched_at", backend.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_assessments_alive_until"), ["alive_until"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessments_alive_until"))
        batch_op.drop_column("cells_dispatched_at")
        batch_op.drop_column("alive_until")
