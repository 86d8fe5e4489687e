"""Sweeps: ``python -m experiments sweep``: the search space file, the Optuna study and the pruning callback."""
