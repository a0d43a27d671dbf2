"""Hypernetworks that map task embeddings to target-network weights."""
