"""Cleaning on the way in (``fastload pack --dedup/--filter/--drop-invalid``): exact
deduplication, record filters, invalid-value rules and the report of what they dropped.

See docs/cleaning.md. :mod:`.options` holds what the user asked, :mod:`.stage` what happens to a
chunk of rows, :mod:`.dedup` the first-occurrence decisions, :mod:`.ordered` how a pack with
workers keeps them global and deterministic.
"""

from .options import CleanOptions, CleanPlan
from .report import CleanTally

__all__ = ["CleanOptions", "CleanPlan", "CleanTally"]
