"""perfcast: predict latency, memory and energy of neural networks."""
__version__ = "0.1.0"
