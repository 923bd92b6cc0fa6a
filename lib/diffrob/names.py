"""Closest valid names for a misspelt one: the "did you mean ...?" of user errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` names of ``known`` close to ``name``: difflib's close matches, then the
    names that have ``name`` as one of their ``_``-separated words (``eps`` -> ``eps_255``)."""
    known = sorted(known)
    found = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    found += [k for k in known if name in k.split("_") and k not in found]
    return found[:n]


def did_you_mean(names: Iterable[str], known: Iterable[str]) -> str:
    """`` (did you mean 'eps_255'?)`` for the first of ``names`` that has close matches, else ''."""
    known = list(known)
    for name in names:
        if found := closest(name, known):
            return f" (did you mean {' or '.join(map(repr, found))}?)"
    return ""
