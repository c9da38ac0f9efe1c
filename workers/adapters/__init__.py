"""Adapters: the real (and fake) implementations of the ports in :mod:`workers.ports`."""
