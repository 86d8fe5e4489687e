"""Runtime: the known output noise of dependencies silenced by exact text, the measured fast paths, and the
mixed precision a GPU gets (its compute capability read through NVML).
"""
