"""Runs: the run folder and its paths, ``best``/``last`` resolution, ``summary.json``, the ``runs`` table,
the flattened config and the SLURM job record.
"""

from experiments.runs.folder import ExperimentFolder, RunFolder

__all__ = ["ExperimentFolder", "RunFolder"]
