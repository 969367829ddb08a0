"""Comparisons, the leaderboard and the `clipprobe` command."""
