"""Training entry point, configs and evaluation of spectral-restore."""
