"""How an image is read and prepared, one home for every path: decoding, training, evaluation, export, serve."""
