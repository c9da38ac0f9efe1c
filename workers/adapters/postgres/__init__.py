"""The PostgreSQL adapters: the database (pool, unit of work, outbox, follow-up queue) and
one repository per aggregate."""

from .database import PostgresDatabase, PostgresUnitOfWork, translate, translated

__all__ = ["PostgresDatabase", "PostgresUnitOfWork", "translate", "translated"]
