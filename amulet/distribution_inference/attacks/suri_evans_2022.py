"""Upstream Amulet 0.6's module path of :class:`SuriEvans2022`."""

from amulet.distribution_inference.attacks._suri_evans_2022 import SuriEvans2022

__all__ = ["SuriEvans2022"]
