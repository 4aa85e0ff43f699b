"""The measurement store: devices, networks, measurements and kernel profiles in
SQLite (default ``~/.perfcast/perfcast.db``) or any SQLAlchemy database, PostgreSQL included.

    from perfcast.store import open_store
    store = open_store()                      # or open_store("postgresql://host/db")
    device = store.upsert_device("ort-cpu-1t", runtime="ort-cpu", threads=1)
    network = store.add_network(graph, "zoo:resnet18")
    store.add_measurement(network, device, batch_size=1, latency_ms={"median": 12.5})
"""

from perfcast.store.db import DEFAULT_PATH, ENV_VAR, resolve_url
from perfcast.store.store import KernelRow, NetworkSummary, Store, measurement_values, open_store

__all__ = [
    "DEFAULT_PATH", "ENV_VAR", "KernelRow", "NetworkSummary", "Store", "measurement_values", "open_store",
    "resolve_url",
]
