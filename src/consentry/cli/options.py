"""Option types shared by several commands, in a module that imports nothing heavy."""

from __future__ import annotations

import click

from consentry.domain.purposes import Purpose

__all__ = ["PURPOSE_CHOICE"]

PURPOSE_CHOICE = click.Choice([p.value for p in Purpose])
