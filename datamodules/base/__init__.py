"""What every data module stands on: data held as tensors, batches cut from them, splits fixed by a seed."""
