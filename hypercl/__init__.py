"""hypercl: continual learning with hypernetworks, swept with Ray Tune + Optuna and tracked in MLflow.

This package is the command's front door (`python -m hypercl`, `hypercl.__version__`); the code is in
hypercl_core (models, methods, training) and orchestrator (sweeps, MLflow, the command line).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hypercl")
except PackageNotFoundError:  # a source tree on sys.path that was never `pip install`ed
    __version__ = "0+unknown"
