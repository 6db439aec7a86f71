"""What the recognisers cannot do for one registered work, told at registration.

Under an opt-in regime a registered work is protected only as far as the gate recognises its
copies. Most works are recognised after the edits the benchmarks measure; some are not, and
their holders should know it when they register, not after a training run admitted a copy:
a 10-word poem, a tiled or flat picture, a small icon with a handful of distinctive points,
a file of a kind with no recogniser yet. :func:`recognition_limits` reads the fingerprints
registration computed (nothing else: the registry never keeps the file) and returns one
:class:`RecognitionLimit` per such limitation; most works have none.

The thresholds are the matchers' own (:mod:`consentry.index.hamming`,
:func:`consentry.fingerprint.text.required_words`) and, for pictures with few distinctive
points, a benchmark figure: of the 200 works of ``python -m bench image``, none of the 6
with fewer than :data:`FEW_KEYPOINTS` keypoints was found after a 20 % crop, a 10-degree turn
or inside a screenshot, against 96 %, 99 % and 83 % of the others
(``docs/recognition-images.md``, "Registration limits").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from consentry.errors import UnreadableInputError
from consentry.fingerprint.base import Fingerprint

# The recognisers' modules (OpenCV, numpy) are imported where a work of their kind is read:
# ``consentry work show`` and the CLI's start stay free of them (the commands load lazily).
# Their kind names are repeated here for the same reason (tests check they agree).
WINNOW_KIND: Final = "text-winnow-v1"
IMAGE_WHOLE_KINDS: Final = frozenset({"pdq", "pdqr1"})
IMAGE_LOCAL_KIND: Final = "orb1"

__all__ = ["FEW_KEYPOINTS", "RecognitionLimit", "recognition_limits"]

#: Pictures with fewer keypoints than this are rarely found after crops, turns, screenshots.
FEW_KEYPOINTS: Final = 50
#: Below this many words a verbatim copy of a whole short work may cover less than half of
#: it: coverage is counted between fingerprints, which may lie ``window - 1`` positions from
#: either end, and ``words - 2 (window - 1) >= words / 2`` from ``4 (window - 1)`` words on
#: (see :func:`~consentry.fingerprint.text.required_words`).
_SURE_WORDS: Final = 4 * (8 - 1)  # window 8 (text.DEFAULT_WINDOW, checked by the tests)
#: Below this many words even a whole verbatim copy is rarely attributed: the passage of 12
#: words is counted between the work's first and last fingerprints, which a text this short
#: seldom spreads that far (``python -m bench text_short``: 15 % of whole copies of 12-19-word
#: works attributed, 77 % of 20-27-word works, all of 28-79-word works).
_RARE_WORDS: Final = 20


@dataclass(frozen=True, slots=True)
class RecognitionLimit:
    """One limitation: a stable ``code`` for programs and a ``message`` for people."""

    code: str
    message: str


def recognition_limits(fingerprints: Sequence[Fingerprint]) -> tuple[RecognitionLimit, ...]:
    """The limitations of recognising a work registered with these fingerprints."""
    kinds = {f.kind for f in fingerprints}
    if WINNOW_KIND in kinds:
        return _text_limits(next(f for f in fingerprints if f.kind == WINNOW_KIND))
    if kinds & {*IMAGE_WHOLE_KINDS, IMAGE_LOCAL_KIND}:
        return _image_limits(fingerprints)
    return (
        RecognitionLimit(
            "exact-copies-only",
            "no recogniser reads this kind of file yet: only exact copies (the same bytes) "
            "are recognised",
        ),
    )


def _text_limits(fingerprint: Fingerprint) -> tuple[RecognitionLimit, ...]:
    from consentry.fingerprint.text import DEFAULT_MIN_RUN, decode_fingerprint, required_words

    try:
        words = decode_fingerprint(fingerprint.value).word_count
    except UnreadableInputError:  # a registry row damaged outside Consentry: say nothing
        return ()
    if words < DEFAULT_MIN_RUN:
        return (
            RecognitionLimit(
                "too-short",
                f"{words} words: too short to be recognised inside another document (a "
                f"passage of {DEFAULT_MIN_RUN} words is needed); only exact copies of the "
                "file are recognised",
            ),
        )
    if words < _RARE_WORDS:
        return (
            RecognitionLimit(
                "too-short",
                f"{words} words: rarely recognised inside another document, even quoted "
                f"whole (a passage of {DEFAULT_MIN_RUN} words between fingerprints is "
                "needed); exact copies of the file are recognised",
            ),
        )
    if words < _SURE_WORDS:
        needed = required_words(words)
        return (
            RecognitionLimit(
                "short",
                f"{words} words: recognised inside another document only when {needed} or "
                "more of them are quoted verbatim, and not always then; a copy with typos or "
                "a partial quotation is usually missed",
            ),
        )
    return ()


def _image_limits(fingerprints: Sequence[Fingerprint]) -> tuple[RecognitionLimit, ...]:
    from consentry.fingerprint.image import decode_local_features
    from consentry.index.hamming import MIN_INLIERS

    whole = sum(1 for f in fingerprints if f.kind in IMAGE_WHOLE_KINDS)
    keypoints = 0
    for f in fingerprints:
        if f.kind == IMAGE_LOCAL_KIND:
            try:
                keypoints += len(decode_local_features(f.value)[1])
            except ValueError:  # (binascii.Error too) a damaged row: count what is readable
                continue
    if whole == 0 and keypoints < MIN_INLIERS:
        return (
            RecognitionLimit(
                "exact-copies-only",
                f"the picture is too flat or too regular to describe (no whole-picture hash, "
                f"{keypoints} distinctive points): only exact copies are recognised",
            ),
        )
    out: list[RecognitionLimit] = []
    if whole == 0:
        out.append(
            RecognitionLimit(
                "no-whole-picture-hash",
                "no whole-picture hash (the picture is flat, tiled or striped): resized, "
                "blurred or recoloured copies are recognised only by its distinctive points",
            )
        )
    if keypoints < FEW_KEYPOINTS:
        out.append(
            RecognitionLimit(
                "few-distinctive-points",
                f"only {keypoints} distinctive points (fewer than {FEW_KEYPOINTS}): cropped, "
                "turned or screenshotted copies are unlikely to be recognised",
            )
        )
    return tuple(out)
