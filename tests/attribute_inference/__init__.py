"""Tests of amulet.attribute_inference."""
