"""Model pool and backends: every loaded model is owned here; agents only ask the pool."""
