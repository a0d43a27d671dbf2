"""hypercl: continual learning with hypernetworks, swept with Ray Tune + Optuna and tracked in MLflow.

This package is the command's front door (`python -m hypercl`, `hypercl.__version__`); the code is in
hypercl_core (models, methods, training) and orchestrator (sweeps, MLflow, the command line).
"""

from hypercl_core.provenance import package_version

__version__ = package_version()
