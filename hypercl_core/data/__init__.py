"""Datasets as tensors on the training device, organised as task sequences."""
