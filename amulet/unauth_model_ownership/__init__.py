"""Model stealing (S3): Unauthorized model ownership: an adversary extracts a functional copy through queries.

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.unauth_model_ownership import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
