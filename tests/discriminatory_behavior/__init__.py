"""Tests of amulet.discriminatory_behavior."""
