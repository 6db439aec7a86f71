"""Match indexes over registered works' fingerprints (see :mod:`consentry.index.base`).

:func:`default_index_factories` lists the indexes a registry keeps and a snapshot carries;
recognisers (image, text, audio) add their factory here.
"""

from __future__ import annotations

from consentry.index.base import Matcher, WorkIndex, WorkIndexFactory

__all__ = ["Matcher", "WorkIndex", "WorkIndexFactory", "default_index_factories"]


def default_index_factories() -> list[WorkIndexFactory]:
    from consentry.index.hamming import HammingIndexFactory
    from consentry.index.text import TextContainmentIndexFactory

    return [TextContainmentIndexFactory(), HammingIndexFactory()]
