"""The application built on the spectral_restore library: the `spectral-restore` command
(cli.py), the training entry point, configs and evaluation."""
