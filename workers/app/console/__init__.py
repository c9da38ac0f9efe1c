"""Purpose-bound access for staff: search, listen, disclose, oversee - every access on record.

The use cases here depend only on the small ports of :mod:`.ports`; PostgreSQL and in-memory
implementations live in ``workers.adapters.postgres_console`` and ``memory_console``, and the
HTTP layer (``workers.adapters.http``) turns requests into calls of these use cases.
"""
