"""Datasets of live face crops (uint8 HxWx3)."""
