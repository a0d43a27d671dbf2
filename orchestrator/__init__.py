"""Ray, MLflow and the command line around hypercl_core.

The orchestrator places hypercl_core's subsystems on Ray actors, runs sweeps
through Ray Tune + Optuna and records them in MLflow. It adds placement and
tracking, never method logic.
"""
