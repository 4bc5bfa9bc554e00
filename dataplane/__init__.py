"""The data plane: long-running processes (broker, ingest, object store, endpoint server) and their launchers."""
