"""Dashboards: RBAC-scoped plotly pages over the analytics queries."""
