"""token scopes and the token that minted each token

Revision ID: 0002_token_scopes
Revises: 0001
Create Date: 2026-12-07 03:40:00

Existing tokens get the ``submit`` scope: they keep reading, uploading and submitting as before, but no
longer mint or revoke tokens (minting is what let a leaked token outlive its revocation). Admin tokens get
``manage`` (an admin token holds every scope anyway). Their ``minted_by`` stays empty: the old schema did
not record who minted what, so revoking an old token revokes only that token.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_token_scopes"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=20), server_default="submit", nullable=False))
        batch_op.add_column(sa.Column("minted_by", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_tokens_minted_by"), ["minted_by"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_minted_by_api_tokens"), "api_tokens", ["minted_by"], ["id"], ondelete="SET NULL"
        )
    tokens = sa.table("api_tokens", sa.column("scope", sa.String), sa.column("is_admin", sa.Boolean))
    op.execute(tokens.update().where(tokens.c.is_admin.is_(True)).values(scope="manage"))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_minted_by_api_tokens"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_tokens_minted_by"))
        batch_op.drop_column("minted_by")
        batch_op.drop_column("scope")
