"""Tests of amulet.data_reconstruction."""
