"""Runtime: the known output noise of dependencies silenced by exact text, and the measured fast paths."""
