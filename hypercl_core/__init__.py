"""Pure-PyTorch hypernetwork continual learning: one experiment, one process.

Nothing in this package imports Ray or MLflow; the orchestrator wraps these
objects for distribution and tracking.
"""
