"""The ``consentry`` command line (thin: parse, call services, print)."""

from consentry.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
