"""The ports: the interfaces the application needs from the outside world, one module per
family - the database (``unit_of_work``), the object store (``objects``), the event bus
(``bus``), audio sources (``audio``), keys (``keys``), typesetting (``letters``) and the console's
(``console``). Real
adapters live in :mod:`workers.adapters`; in-memory fakes under ``tests/fakes``."""
