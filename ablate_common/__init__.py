"""Helpers that `ablations` and `dashboards` both use: run names, redaction, opening the MLflow
store and plain-text tables. Nothing here imports either package, so they depend on it one way:
`ablations` -> `dashboards` -> `ablate_common`."""
