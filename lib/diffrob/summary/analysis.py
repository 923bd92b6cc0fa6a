"""Counting the verdicts of the paper's claims: pure, every order an explicit argument."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd


def verdict_counts(rows: pd.DataFrame, section_order: Sequence[str],
                   verdict_order: Sequence[str]) -> pd.DataFrame:
    """Claims per section and verdict of ``rows`` (columns ``section``, ``verdict``).

    One row per section that has a claim, in ``section_order``; one column per verdict, in
    ``verdict_order``; zero where none.
    """
    order = [s for s in section_order if s in set(rows["section"])]
    return (rows.groupby([pd.Categorical(rows["section"], categories=order), "verdict"],
                         observed=False).size().unstack(fill_value=0)
            .reindex(index=order, columns=list(verdict_order), fill_value=0))


def tally(verdicts: pd.Series, verdict_order: Sequence[str]) -> pd.Series:
    """How many claims have each verdict, in ``verdict_order``, zero where none."""
    return verdicts.value_counts().reindex(list(verdict_order), fill_value=0)


def differing(settings: Mapping[str, Any], mine: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` whose value differs from ``mine`` (absent in ``mine``: same)."""
    return {k: v for k, v in settings.items() if mine.get(k, v) != v}


def pre_registered(registered: pd.Series) -> int:
    """How many claims' criteria were pre-registered (``registered`` is ``"pre"``; the others
    read ``"post hoc (YYYY-MM-DD)"``, or are empty for rows recorded before the field)."""
    return int((registered == "pre").sum())


def protocol_verdicts(protocols: Mapping[str, Mapping[str, Any]]) -> str:
    """The verdict under each further protocol of a claim (``claims.table``'s ``protocols``),
    as ``"name: verdict; ..."`` ("" where it was judged under the paper's protocol only)."""
    return "; ".join(f"{name}: {row['verdict']}" for name, row in protocols.items())
