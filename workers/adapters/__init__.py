"""Adapters: the real implementations of the ports in :mod:`workers.app.ports` (the in-memory
fakes live under ``tests/fakes``)."""
