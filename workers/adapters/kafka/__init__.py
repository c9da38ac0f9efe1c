"""Kafka: the producer (``bus``), topic administration (``admin``), consumer lag (``lag``),
the CloudEvents codec (``codec``), a topic watcher (``watch``) and how every client connects
(``security``)."""
