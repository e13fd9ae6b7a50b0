"""Plotly dashboards built from the runs MLflow holds."""
