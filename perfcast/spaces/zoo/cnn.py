"""Convolutional networks of the zoo."""
