"""Counts in the lines commands print: ``1 part``, ``784 parts``, ``52,403 PTRs``.

>>> counted(1, "part"), counted(0, "FTR"), counted(52403, "PTR")
('1 part', '0 FTRs', '52,403 PTRs')
>>> were(1, "part"), were(2, "part")
('1 part was', '2 parts were')
"""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``n`` (thousands separated) and ``noun``, plural unless ``n`` is 1."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def were(n: int, noun: str) -> str:
    """``counted`` followed by its verb: ``1 part was``, ``2 parts were``."""
    return f"{counted(n, noun)} {'was' if n == 1 else 'were'}"
