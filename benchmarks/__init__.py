"""Project vs plain PyTorch, measured in one run on one machine (``python -m benchmarks NAME``)."""
