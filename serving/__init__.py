"""The champion signals online: one item in, its embeddings, labels and neighbours out, through the batch job's Signal objects."""
