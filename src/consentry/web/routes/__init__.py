"""Route modules: ``public`` (pages), ``api`` (JSON under /api/v1, counts, health), ``admin``."""
