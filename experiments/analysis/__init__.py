"""What the answers of a trained model say about it: its errors, its calibration."""
