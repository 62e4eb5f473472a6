"""Planning and execution: the plan is built once per session, `run` only executes it."""
