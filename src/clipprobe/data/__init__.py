"""The datasets: registry, sources, prepare, and the read side of the prepared format."""
