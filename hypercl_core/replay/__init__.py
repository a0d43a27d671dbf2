"""Generative replay models whose generators a protected hypernetwork parametrizes."""
