"""Purpose-bound access for staff: search, listen, disclose, oversee - every access on record.

The use cases here depend only on the small ports of :mod:`workers.app.ports.console`; the
PostgreSQL implementation lives in ``workers.adapters.postgres.console`` (the in-memory fake
in ``tests/fakes/console.py``), and the
HTTP layer (``workers.adapters.http``) turns requests into calls of these use cases.
"""
