"""Datasets of measurements: export from a store to compact files, load them back."""
