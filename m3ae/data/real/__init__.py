"""Readers for the real datasets in their published on-disk formats."""
