"""Jobs: persisted work items, their event stream, and the runner that executes them."""
