"""Declarative YAML: experiment presets (presets/) and sweep spaces."""
