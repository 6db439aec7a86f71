"""Consentry: an opt-in consent registry for creative works and the training-data gate."""

__version__ = "0.1.0"
