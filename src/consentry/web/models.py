"""Public response models of the JSON API (``/api/v1``).

These are separate from the service's dataclasses on purpose: the API promises exactly these
fields, and nothing the service adds later (internal ids, e-mails, IPs) can leak by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CountPublic",
    "ErrorPublic",
    "HealthPublic",
    "SignerPublic",
    "StatementDetailPublic",
    "StatementPublic",
]


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorPublic(_Public):
    detail: str = Field(description="What went wrong, for humans.")


class StatementPublic(_Public):
    slug: str
    title: str
    state: Literal["open", "closed"]
    languages: list[str]
    opens_at: datetime | None
    closes_at: datetime | None
    goal: int | None = Field(description="The signature goal (threshold), if any.")
    signature_count: int = Field(description="Validated signatures, updated in batches.")
    count_updated_at: datetime | None
    url: str = Field(description="The statement's public page.")


class SignerPublic(_Public):
    ordinal: int = Field(description="The signature's number, in order of confirmation.")
    name: str | None = Field(description="null: the signer chose to be listed as Anonymous.")
    occupation: str | None
    country: str | None
    kind: Literal["person", "notable", "organisation"] = Field(
        description="notable / organisation only after an operator vetted the signer."
    )


class StatementDetailPublic(StatementPublic):
    text: str
    required_fields: list[str]
    notables: list[SignerPublic] = Field(description="Vetted notable signers.")
    organisations: list[SignerPublic] = Field(description="Vetted organisations.")


class CountPublic(_Public):
    slug: str
    signature_count: int
    goal: int | None
    updated_at: datetime | None


class HealthPublic(_Public):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
