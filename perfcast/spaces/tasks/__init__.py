"""Sampled task spaces."""
