"""The one exception tree of Consentry.

Every error the package raises on purpose is a :class:`ConsentryError`; the CLI catches only
that (exit 1, one line naming the problem) and treats anything else as an internal error
(exit 2). Keep the tree shallow and say *what the user can do* in the message.

::

    ConsentryError
    ├── InvalidInputError        a value the user gave is malformed (time, purpose, option)
    │   └── UnreadableInputError a file or item cannot be read or decoded
    ├── NotFoundError            an id names nothing in the registry
    ├── ConflictError            the request contradicts the registry's state
    │   └── PermissionDeniedError  the acting party may not do this (not a holder, too weak)
    ├── StoreError               the registry's database cannot be used
    │   ├── DatabaseLockedError  another writer holds the lock for too long
    │   └── SchemaVersionError   the database was made by a newer (or unknown) schema
    ├── ConfigurationError       settings are missing, contradictory or insecure
    └── VerificationError        a proof, signature or hash does not verify
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "ConsentryError",
    "DatabaseLockedError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "SchemaVersionError",
    "StoreError",
    "UnreadableInputError",
    "VerificationError",
]


class ConsentryError(Exception):
    """Base of every error Consentry raises on purpose; the message is one line for humans."""


class InvalidInputError(ConsentryError):
    """A value given by the user is malformed or out of range."""


class UnreadableInputError(InvalidInputError):
    """A file or item cannot be read, is empty, too large, or is not what it claims to be."""


class NotFoundError(ConsentryError):
    """An identifier names nothing in the registry."""


class ConflictError(ConsentryError):
    """The request contradicts the registry's current state (e.g. agreeing twice)."""


class PermissionDeniedError(ConflictError):
    """The acting party is not entitled to do this (e.g. not a holder of the work)."""


class StoreError(ConsentryError):
    """The registry database cannot be opened or used."""


class DatabaseLockedError(StoreError):
    """Another process holds the write lock and did not release it in time."""


class SchemaVersionError(StoreError):
    """The database schema is newer than (or unknown to) this version of Consentry."""


class ConfigurationError(ConsentryError):
    """Settings are missing, contradictory, or insecure for the chosen mode."""


class VerificationError(ConsentryError):
    """A proof, signature, checksum or content hash does not verify."""
