"""API tokens: generation and hashing.

Tokens are 256-bit random strings (``amt_`` + URL-safe base64). Only their SHA-256 is stored; the
plaintext is shown once, when the token is created. A random 256-bit secret needs no slow password hash:
SHA-256 of it cannot be brute-forced, and it lets the database look a token up by its hash.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = [
    "ADMIN_SCOPE",
    "SCOPES",
    "TOKEN_PREFIX",
    "generate_token",
    "hash_token",
    "scope_allows",
    "token_display_prefix",
]

TOKEN_PREFIX = "amt_"

#: Token scopes, each including the ones before it: ``read`` answers GET requests; ``submit`` adds every
#: other request on the project's uploads and assessments (upload, submit, cancel, delete); ``manage`` adds
#: minting and revoking tokens. The admin token (``is_admin``) holds every scope and creates projects.
SCOPES = ("read", "submit", "manage")
#: What an admin token shows as its scope; no token can be minted with it.
ADMIN_SCOPE = "admin"
_RANK = {name: rank for rank, name in enumerate((*SCOPES, ADMIN_SCOPE))}


def generate_token() -> str:
    """Return a new random API token (shown to the user once, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex digest under which ``token`` is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_display_prefix(token: str) -> str:
    """The first characters of ``token``, safe to show in listings to tell tokens apart."""
    return token[: len(TOKEN_PREFIX) + 6]


def scope_allows(held: str, needed: str) -> bool:
    """Whether a token holding scope ``held`` may do what needs scope ``needed`` (scopes include lower ones)."""
    return _RANK.get(held, -1) >= _RANK[needed]
