"""The HTTP layer: every Faust web view (reads, control, status, events, dashboard, metrics)."""
