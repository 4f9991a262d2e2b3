"""Inference: the one path from a picture or a text to labels, embeddings and reconstructions."""
