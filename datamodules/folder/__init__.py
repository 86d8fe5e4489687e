"""Your own images: a folder or CSV listed, decoded once, held in memory or streamed, served as batches."""
