"""nb201 space."""
