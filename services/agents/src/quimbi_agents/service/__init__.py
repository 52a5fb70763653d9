"""The agents service's use cases (writes), by aggregate: `agents` (login, the bootstrap admin,
managing agents) and `assignments` (assign, accept, auto-assignment and its locks)."""
