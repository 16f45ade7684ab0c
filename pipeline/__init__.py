"""Prefect flows, one per pipeline stage. Thin: the work lives in ``liveness``."""
