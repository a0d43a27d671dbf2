"""Target networks that take their weights as an argument."""
