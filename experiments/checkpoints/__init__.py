"""Checkpoints: written atomically, and the net's options a checkpoint brings to the config that loads it."""

from experiments.checkpoints.atomic_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]
