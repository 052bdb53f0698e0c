"""Upstream Amulet 0.6's module path of :class:`WhiteBoxPIM`."""

from amulet.distribution_inference.attacks._whitebox_pim import WhiteBoxPIM

__all__ = ["WhiteBoxPIM"]
