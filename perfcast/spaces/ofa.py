"""ofa space."""
