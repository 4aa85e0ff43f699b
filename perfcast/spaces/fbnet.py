"""fbnet space."""
