"""Experiments: one YAML per experiment and the command line that runs them."""
