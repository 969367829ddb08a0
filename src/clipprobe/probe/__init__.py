"""The linear probe, its solver, the C search and few-shot."""
