"""redset: Redis-backed sorted sets for sharing work between processes.

Successor of redset 0.5.1, with the same API plus batch operations, a
compiled pipeline and the fixes listed in the migration notes.
"""
from __future__ import annotations

from redset._version import __version__
from redset._wire import USE_EXTENSIONS
from redset.sets import ScheduledSet, SortedSet, TimeSortedSet

__all__ = ["SortedSet", "TimeSortedSet", "ScheduledSet", "USE_EXTENSIONS", "__version__"]
