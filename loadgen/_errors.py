"""The one error the load generator raises itself (bad settings raise `searchgw.settings.SettingsError`)."""

from __future__ import annotations

__all__ = ["LoadgenError"]


class LoadgenError(Exception):
    """The run cannot go ahead or cannot finish: a bad queries file, no connection, a failed worker."""
