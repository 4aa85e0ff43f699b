from perfcast.analysis.summary import Analysis, analyze_graph, activation_peak_bytes

__all__ = ["Analysis", "analyze_graph", "activation_peak_bytes"]
