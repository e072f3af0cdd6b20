"""The benchmark: `python -m bench all [--database-url URL] [--json]` (see README, Performance)."""
