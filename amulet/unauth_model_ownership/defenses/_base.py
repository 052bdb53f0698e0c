"""Base classes of model-ownership defenses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import nn

__all__ = ["FingerprintDefense", "WatermarkDefense"]


class FingerprintDefense(ABC):
    """A post-hoc verification that a suspect model was derived from the target; see :meth:`fingerprint`."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Run the verification and return its statistics."""


class WatermarkDefense(ABC):
    """A defense that embeds a verifiable watermark into the model while training."""

    @abstractmethod
    def watermark(self) -> nn.Module:
        """Embed the watermark and return the watermarked model."""

    @abstractmethod
    def verify(self, model: nn.Module, threshold: float = 0.9) -> bool:
        """Whether ``model`` carries the watermark."""
