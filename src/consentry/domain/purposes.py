"""The purposes vocabulary (versioned) and how outside vocabularies map onto it.

A grant names the purposes it allows. Purposes are exact: a grant for ``train-ai``
(non-generative training) does not cover ``train-genai`` and vice versa; nothing implies
anything else, because an implied permission is a permission nobody gave.

The mapping table lets the gate read opt-out/opt-in signals written in other vocabularies
(aipref, CAWG, IPTC, TDMRep, RSL). A signal that maps to several of our purposes applies to
each of them.
"""

from __future__ import annotations

from enum import StrEnum

from consentry.errors import InvalidInputError

__all__ = [
    "EXTERNAL_VOCABULARIES",
    "PURPOSES_VERSION",
    "Purpose",
    "parse_purpose",
    "purposes_for_external",
]

PURPOSES_VERSION = "1"


class Purpose(StrEnum):
    """What a licensee wants to do with a work."""

    TRAIN_GENAI = "train-genai"
    """Training a generative model (text, image, audio, video generation)."""
    TRAIN_AI = "train-ai"
    """Training a non-generative model (classification, embedding, recognition)."""
    RAG = "rag"
    """Retrieval or other use at inference time (grounding, retrieval-augmented generation)."""
    SEARCH = "search"
    """Indexing so that the work can be found and linked to (search engines)."""
    DATA_MINING = "data-mining"
    """Text and data mining for analysis, without training a model on the work."""


# (vocabulary, term) -> our purposes. One table, so a reviewer can read every mapping at once.
EXTERNAL_VOCABULARIES: dict[tuple[str, str], frozenset[Purpose]] = {
    # IETF aipref Content-Usage (draft-ietf-aipref-vocab): train-ai covers all model training.
    ("aipref", "train-ai"): frozenset({Purpose.TRAIN_AI, Purpose.TRAIN_GENAI}),
    ("aipref", "train-genai"): frozenset({Purpose.TRAIN_GENAI}),
    ("aipref", "search"): frozenset({Purpose.SEARCH}),
    ("aipref", "ai-use"): frozenset({Purpose.RAG}),
    # CAWG training-and-data-mining assertion.
    ("cawg", "cawg.ai_generative_training"): frozenset({Purpose.TRAIN_GENAI}),
    ("cawg", "cawg.ai_training"): frozenset({Purpose.TRAIN_AI}),
    ("cawg", "cawg.ai_inference"): frozenset({Purpose.RAG}),
    ("cawg", "cawg.data_mining"): frozenset({Purpose.DATA_MINING}),
    # IPTC plus:DataMining values: every DMI-PROHIBITED* term forbids mining and AI training.
    ("iptc", "DMI-PROHIBITED"): frozenset(Purpose),
    ("iptc", "DMI-PROHIBITED-AIMLTRAINING"): frozenset({Purpose.TRAIN_AI, Purpose.TRAIN_GENAI}),
    ("iptc", "DMI-PROHIBITED-GENAIMLTRAINING"): frozenset({Purpose.TRAIN_GENAI}),
    ("iptc", "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING"): frozenset(
        {Purpose.TRAIN_AI, Purpose.TRAIN_GENAI, Purpose.RAG, Purpose.DATA_MINING}
    ),
    # W3C TDMRep: tdm-reservation=1 reserves all text and data mining, hence all of ours.
    ("tdmrep", "tdm-reservation"): frozenset(Purpose),
    # RSL (Really Simple Licensing) usage values.
    ("rsl", "ai-train"): frozenset({Purpose.TRAIN_AI, Purpose.TRAIN_GENAI}),
    ("rsl", "ai-input"): frozenset({Purpose.RAG}),
    ("rsl", "search"): frozenset({Purpose.SEARCH}),
}


def parse_purpose(value: str) -> Purpose:
    """Parse one purpose of our vocabulary; the error lists the valid ones."""
    try:
        return Purpose(value.strip().lower())
    except ValueError:
        valid = ", ".join(p.value for p in Purpose)
        raise InvalidInputError(f"unknown purpose {value!r}; expected one of: {valid}") from None


def purposes_for_external(vocabulary: str, term: str) -> frozenset[Purpose]:
    """Our purposes for a term of an outside vocabulary; unknown terms raise (fail closed)."""
    try:
        return EXTERNAL_VOCABULARIES[(vocabulary.lower(), term)]
    except KeyError:
        raise InvalidInputError(f"no mapping for {vocabulary}:{term!r}") from None
