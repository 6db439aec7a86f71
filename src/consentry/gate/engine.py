"""The gate: one function from (item, snapshot, policy) to a decision with reasons.

Engine-agnostic and free of I/O beyond reading the snapshot once: the same
:meth:`Gate.decide_batch` runs in the local process pool, in a notebook, inside
``datasets.Dataset.filter(..., batched=True)``, or on a cluster worker.

Example::

    from consentry import Gate
    gate = Gate.from_snapshot(
        "registry.snapshot", policy="policy.toml", operator_key="operator.pub"
    )
    decision = gate.decide(Path("photo.jpg").read_bytes())
    kept = dataset.filter(gate.predicate(column="text"), batched=True)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from consentry.domain import Decision, ItemFacts, Outcome, WorkMatch
from consentry.domain.bases import Basis, Policy, basis_of, decide_with_policy
from consentry.domain.decide import best_matches
from consentry.errors import InvalidInputError, UnreadableInputError
from consentry.fingerprint import default_fingerprinters, fingerprint_all
from consentry.fingerprint.media import detect_media_type
from consentry.gate.item import Item
from consentry.gate.policy import load_policy, policy_from_mapping
from consentry.gate.snapshot import Snapshot
from consentry.index.base import Matcher
from consentry.ledger.note import Verifier

__all__ = ["Gate", "GateDecision"]


@dataclass(frozen=True, slots=True)
class GateDecision:
    """A decision about one dataset item, with what the recognisers found."""

    key: str
    ordinal: int
    decision: Decision
    matches: tuple[WorkMatch, ...]
    basis: Basis | None
    error: str | None = None
    source: str | None = None
    """The item's source as its metadata states it (policy ``fields.source``), for reports."""

    @property
    def admitted(self) -> bool:
        return self.decision.outcome is Outcome.ADMIT

    def record(self) -> dict[str, Any]:
        """The row written to decisions.parquet (and hashed into the manifest's Merkle root)."""
        grant_ids = sorted({e.grant_id for e in self.decision.evidence if e.grant_id})
        return {
            "ordinal": self.ordinal,
            "key": self.key,
            "decision": self.decision.outcome.value,
            "reasons": [r.value for r in self.decision.reasons],
            "basis": self.basis.value if self.basis else None,
            "work_ids": [m.work_id for m in self.matches],
            "scores": [float(m.score) for m in self.matches],
            "stages": [m.stage for m in self.matches],
            "grant_ids": grant_ids,
            "error": self.error,
            "source": self.source,
            "evidence": json.dumps(
                [e.to_json() for e in self.decision.evidence], sort_keys=True, ensure_ascii=False
            ),
        }


def _as_policy(policy: Policy | str | Path | Mapping[str, Any], at: datetime | None) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, Path)):
        return load_policy(Path(policy), default_at=at)
    return policy_from_mapping(policy, default_at=at)


class Gate:
    """Decides items against one snapshot under one policy."""

    def __init__(self, snapshot: Snapshot, policy: Policy) -> None:
        if snapshot.view.party(policy.licensee) is None:
            raise InvalidInputError(
                f"licensee {policy.licensee} is not a party in snapshot {snapshot.id}"
            )
        self.snapshot = snapshot
        self.policy = policy
        self._matchers: list[Matcher] = [snapshot.exact, *snapshot.indexes]
        # Built once: the fingerprinters hold only their settings (building them per item
        # was ~2 % of recognising a short text).
        self._fingerprinters = default_fingerprinters()
        # Metadata fields the policy's other bases read; none with grants alone.
        self._basis_fields: tuple[str, ...] = (
            ()
            if policy.bases <= {Basis.GRANT}
            else (policy.licence_field, policy.provenance_field, policy.source_field)
        )
        self._decisions: dict[tuple[Any, ...], Decision] = {}

    @classmethod
    def from_snapshot(
        cls,
        path: str | Path,
        *,
        policy: Policy | str | Path | Mapping[str, Any],
        operator_key: str | Path | Verifier | None = None,
        trust_snapshot_key: bool = False,
        at: datetime | None = None,
        verify: bool = True,
    ) -> Gate:
        """Load a snapshot and a policy (object, TOML or dict).

        The snapshot must be signed by the pinned ``operator_key`` (a verifier key string, a
        file holding one such as the registry's ``keys/operator.pub``, or a Verifier), and its
        content hashes, checkpoint and log proofs must verify (:meth:`Snapshot.load`).
        """
        snapshot = Snapshot.load(
            path,
            operator_key=operator_key,
            trust_snapshot_key=trust_snapshot_key,
            verify=verify,
        )
        return cls(snapshot, _as_policy(policy, at))

    # -- recognition -----------------------------------------------------------------------

    def recognise(
        self, data: bytes, media_type: str | None = None, name: str = ""
    ) -> list[WorkMatch]:
        """Registered works the content appears to contain, best first (no decision)."""
        media = media_type or detect_media_type(data, name).value
        prints = fingerprint_all(data, media, self._fingerprinters, query=True)
        return best_matches([m for matcher in self._matchers for m in matcher.match(prints)])

    # -- decisions -------------------------------------------------------------------------

    def decide(
        self, item: Item | bytes | str, *, metadata: Mapping[str, Any] | None = None
    ) -> GateDecision:
        """Decide one item: an :class:`Item`, raw bytes, or a text string."""
        if not isinstance(item, Item):
            data = item.encode("utf-8") if isinstance(item, str) else item
            media = "text" if isinstance(item, str) else None
            item = Item(
                key="item", ordinal=0, data=data, media_type=media, metadata=dict(metadata or {})
            )
        matches: tuple[WorkMatch, ...] = ()
        error = item.error
        if error is None and not item.data:
            error = "empty item"
        if error is None:
            assert item.data is not None  # noqa: S101 - checked just above
            try:
                matches = tuple(self.recognise(item.data, item.media_type, item.key))
            except UnreadableInputError as exc:
                error = str(exc)
        facts = ItemFacts(item.key, matches, unreadable=error)
        decision = self._decide_facts(facts, item.metadata)
        source = item.metadata.get(self.policy.source_field)
        return GateDecision(
            item.key,
            item.ordinal,
            decision,
            matches,
            basis_of(decision),
            error,
            str(source) if source is not None else None,
        )

    _MEMO_LIMIT = 4096
    """Distinct (matches, metadata) decisions remembered; beyond that the memo starts again."""

    def _decide_facts(self, facts: ItemFacts, metadata: Mapping[str, Any]) -> Decision:
        """:func:`decide_with_policy`, memoised: one snapshot, one policy, one time — so the
        decision is a function of the matches and the few metadata fields the policy reads.

        Most items of a dataset share a handful of decisions (nothing recognised; one granted
        work), and the same object coming back lets the leaf encoder reuse its JSON. The key
        holds each score's ``repr``, so ``1`` and ``1.0`` (which print differently in the
        evidence) are told apart; unreadable items are decided directly (their error text is
        theirs alone).
        """
        if facts.unreadable is not None:
            return decide_with_policy(facts, metadata, self.policy, self.snapshot.view)
        key = (
            tuple((m.work_id, m.stage, repr(m.score)) for m in facts.matches),
            tuple(
                None if (value := metadata.get(name)) is None else str(value)
                for name in self._basis_fields
            ),
        )
        decision = self._decisions.get(key)
        if decision is None:
            decision = decide_with_policy(facts, metadata, self.policy, self.snapshot.view)
            if len(self._decisions) >= self._MEMO_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def decide_batch(self, items: Iterable[Item]) -> list[GateDecision]:
        return [self.decide(item) for item in items]

    def predicate(
        self,
        column: str,
        *,
        media_type: str | None = None,
        metadata_columns: Sequence[str] = (),
    ) -> Callable[[Mapping[str, list[Any]]], list[bool]]:
        """A batched predicate for ``datasets.Dataset.filter(fn, batched=True)``.

        ``column`` holds text (str), image bytes, Hugging Face image dicts (``{"bytes"}``,
        with ``Image(decode=False)``) or decoded PIL images (re-encoded as PNG, so only the
        perceptual recognisers can match them; prefer ``decode=False``).
        ``metadata_columns`` are handed to the policy's bases (licence, source, provenance).
        """

        def keep(batch: Mapping[str, list[Any]]) -> list[bool]:
            values = batch[column]
            out: list[bool] = []
            for row, value in enumerate(values):
                meta = {name: batch[name][row] for name in metadata_columns if name in batch}
                data, error = _content(value)
                media = media_type or ("text" if isinstance(value, str) else None)
                item = Item(
                    key=f"row-{row}",
                    ordinal=row,
                    data=data,
                    media_type=media,
                    metadata=meta,
                    error=error,
                )
                out.append(self.decide(item).admitted)
            return out

        return keep


def _content(value: Any) -> tuple[bytes | None, str | None]:
    if isinstance(value, str):
        return value.encode("utf-8"), None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    if isinstance(value, Mapping) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"]), None
    if value is None:
        return None, "missing content"
    if isinstance(value, Image.Image):
        # A decoded `datasets.Image()` column: re-encode losslessly for the recognisers (the
        # perceptual ones see the same pixels; exact-bytes matching needs decode=False).
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue(), None
    return None, f"unsupported content type {type(value).__name__}"
