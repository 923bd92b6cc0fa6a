"""The paper's claims, its numbers beside ours, and whether each holds here.

The paper's numbers and its claims are the project's own data files
(``paper_data/<section>.yaml``, transcribed from the paper, its appendix and its review
thread). Each claim there is an entry of ``claims:`` with the paper's words, the paper's
value, the quantity we compute, the criterion (``above`` / ``below`` a threshold or
``within`` [lo, hi], derived from the paper's own numbers or words) and the criterion's
``source``. A chapter's report passes its measured statistic with its interval
(:mod:`diffrob.verdicts`) to :func:`record`, which reads the criterion, decides and
stores the row; no threshold is typed in a chapter or its report.

Power: each claim tests an effect, the distance between the paper's value and the
criterion's bar (``paper_effect``, in the quantity's unit, per world where the paper has
several; ``null`` where the paper gives no number), or for ``within`` the window's
half-width. A row carries the minimum detectable effect of our interval and the number
of units that would detect the claim's effect (:func:`diffrob.verdicts.mde`,
:func:`diffrob.verdicts.n_needed`); an undecided verdict whose MDE exceeds the effect is
``underpowered``.

Registration: every criterion carries ``registered: pre`` (fixed before any world's
results, as the git log shows) or ``registered: "post hoc (YYYY-MM-DD)"`` (written or
changed on that day). Whether it was fixed before *a world's* results is decided per world
(:func:`registration`) against that world's first results
(``paper_data/first_results.yaml``): a criterion written after digits' results is post hoc
on digits and pre-registered on CIFAR-10, of which no result had been seen. Each section's
claims are frozen by their digest (:func:`claims_digest`) in ``paper_data/frozen.yaml``: a
change to a claim without a newly recorded digest fails the tests (:func:`frozen_digest`).

Rows are stored per parameter set: ``<results_dir>/<world>/claims/<digest>/<section>/<id>.json``
with ``digest = params_digest(p)``, one file per claim, each written atomically under a
unique temporary name. A stored row is judged again when it is read (:func:`table`), from
its measurement under today's ``paper_data``: a changed criterion never serves an old
verdict. The Summary reads the rows of one parameter set
(:func:`table`) and, across worlds, of each world's default parameter file
(:func:`cross_world`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from . import params as params_module
from . import store, verdicts, worlds
from .params import Params
from .verdicts import Estimate

SECTIONS = ("setup", "sec31", "sec32", "sec4", "sec5", "sec6")  # the book's order
SECTION_NAMES = {"setup": "Setup", "sec31": "3.1", "sec32": "3.2", "sec4": "4", "sec5": "5",
                 "sec6": "6"}                                       # the paper's section numbers

_SPEC_KEYS = {"words", "paper", "quantity", "criterion", "source"}
_OPTIONAL_KEYS = {"scale", "unit", "paper_effect"}
_REGISTERED = re.compile(r"pre|post hoc \(\d{4}-\d{2}-\d{2}\)")
FROZEN = "frozen.yaml"   # paper_data/frozen.yaml: section -> list of {digest, date}
FIRST_RESULTS = "first_results.yaml"   # paper_data/first_results.yaml: world -> date


def paper(section: str) -> dict[str, Any]:
    """The paper's numbers of one section (``paper_data/<section>.yaml``)."""
    if section not in SECTIONS:
        raise ValueError(f"section: expected one of {list(SECTIONS)}, got {section!r}")
    text = resources.files("diffrob").joinpath("paper_data", f"{section}.yaml").read_text()
    return yaml.safe_load(text)


def paper_world(section: str, world: str) -> str:
    """The world whose numbers the paper gives for ``section`` beside ours: ``world`` itself
    where the paper has it, else CIFAR-10 (the paper's main setting)."""
    return world if world in paper(section) else "cifar10"


def _decision(criterion: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a criterion that decides (its ``registered`` field left out)."""
    return {k: v for k, v in criterion.items() if k != "registered"}


def _check_effect(value: Any, where: str) -> None:
    values = value.values() if isinstance(value, Mapping) else [value]
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not (math.isfinite(v) and v > 0)):
            raise ValueError(f"{where}: paper_effect must be a number > 0, null (the paper "
                             f"gives no number) or a mapping world -> one, got {value!r}")
    if isinstance(value, Mapping) and "cifar10" not in value:
        raise ValueError(f"{where}: paper_effect per world needs a 'cifar10' entry, got {value!r}")


def specs(section: str) -> dict[str, dict[str, Any]]:
    """The claims of ``section`` in book order, each checked (errors name the file and id)."""
    where = f"paper_data/{section}.yaml"
    entries = paper(section).get("claims")
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{where}: expected a mapping 'claims:' of claim id -> entry")
    for claim, spec in entries.items():
        at = f"{where}: claim {claim!r}"
        if not isinstance(spec, dict):
            raise ValueError(f"{at} must be a mapping")
        missing, unknown = _SPEC_KEYS - set(spec), set(spec) - _SPEC_KEYS - _OPTIONAL_KEYS
        if missing or unknown:
            raise ValueError(f"{at}: missing keys {sorted(missing)}, "
                             f"unknown keys {sorted(unknown)}")
        criterion = spec["criterion"]
        registered = criterion.get("registered") if isinstance(criterion, Mapping) else None
        if not (isinstance(registered, str) and _REGISTERED.fullmatch(registered)):
            raise ValueError(f"{at}: the criterion needs registered: pre or "
                             f"registered: \"post hoc (YYYY-MM-DD)\", got {registered!r}")
        c = verdicts.check_criterion(_decision(criterion), at)
        if c["kind"] == "within" and "paper_effect" in spec:
            raise ValueError(f"{at}: a within criterion tests its window's half-width; "
                             "drop paper_effect")
        if c["kind"] != "within":
            if "paper_effect" not in spec:
                raise ValueError(f"{at}: missing key 'paper_effect' (the paper's distance from "
                                 "the bar, in the quantity's unit; null if the paper gives no "
                                 "number)")
            _check_effect(spec["paper_effect"], at)
    return entries


def spec(section: str, claim: str) -> dict[str, Any]:
    """One claim's entry of ``paper_data/<section>.yaml``."""
    entries = specs(section)
    if claim not in entries:
        raise ValueError(f"claim: {claim!r} is not in paper_data/{section}.yaml "
                         f"(known: {', '.join(entries)})")
    return entries[claim]


def claims_digest(section: str) -> str:
    """The SHA-256 of the canonical JSON of ``section``'s claims (keys sorted, compact): any
    change to a claim's words, values, criterion, registration or source changes it."""
    text = json.dumps(specs(section), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def frozen_digest(section: str) -> str | None:
    """The digest last recorded for ``section`` in ``paper_data/frozen.yaml`` (the last entry
    of its list of ``{digest, date}``), or ``None`` when none is recorded."""
    if section not in SECTIONS:
        raise ValueError(f"section: expected one of {list(SECTIONS)}, got {section!r}")
    frozen = yaml.safe_load(resources.files("diffrob").joinpath("paper_data", FROZEN)
                            .read_text()) or {}
    entries = frozen.get(section) or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) and "digest" in e
                                                for e in entries):
        raise ValueError(f"paper_data/{FROZEN}: {section!r} must be a list of "
                         f"{{digest: ..., date: YYYY-MM-DD}}, got {entries!r}")
    return str(entries[-1]["digest"]) if entries else None


def first_results() -> dict[str, datetime.date]:
    """The date of each world's first results here (``paper_data/first_results.yaml``);
    a world without an entry has none."""
    where = f"paper_data/{FIRST_RESULTS}"
    raw = yaml.safe_load(resources.files("diffrob").joinpath("paper_data", FIRST_RESULTS)
                         .read_text()) or {}
    if not isinstance(raw, dict) or not all(isinstance(d, datetime.date) for d in raw.values()):
        raise ValueError(f"{where}: expected a mapping world -> date (YYYY-MM-DD), got {raw!r}")
    return raw


def registration(criterion: Mapping[str, Any], world: str) -> str:
    """``"pre"`` where ``criterion`` was fixed before ``world``'s first results, else its own
    ``"post hoc (YYYY-MM-DD)"``: a criterion written on or after the date of the world's first
    results (:func:`first_results`) is post hoc there, one written before it, or in a world
    with no results yet, pre-registered."""
    registered = criterion["registered"]
    if registered == "pre":
        return "pre"
    written = datetime.date.fromisoformat(registered.removeprefix("post hoc (").rstrip(")"))
    first = first_results().get(world)
    return registered if first is not None and written >= first else "pre"


def params_digest(p: Params) -> str:
    """The digest of the parameter set that ``p``'s claims are filed under, 16 hex digits.

    The store's digest of the parameters that can change a result, as this machine runs them
    (one definition: :func:`diffrob.store.params_digest` of :func:`diffrob.worlds.settled`);
    or, where nothing is filed under it, that of a set recorded before a parameter was added
    (which changes every digest): one whose ``params.json`` agrees with ``p`` on every
    parameter, a parameter it lacks taken at its default. So a world's claims are still found
    after a new default parameter.
    """
    p = worlds.settled(p)
    own = store.params_digest(p)[:16]
    root = p.store_dir / "claims"
    if (root / own).is_dir() or not root.is_dir():
        return own
    ours = store.canonical(settings(p))
    for folder in sorted(root.iterdir()):
        stored = folder / "params.json"
        if stored.is_file():
            theirs = _read_json(stored)
            if all(theirs[k] == v if k in theirs
                   else store.canonical(params_module.default(k)) == v
                   for k, v in ours.items()):
                return folder.name
    return own


def settings(p: Params) -> dict[str, Any]:
    """The parameters of ``p`` that can change a result (those :func:`params_digest` digests),
    as this machine runs them (:func:`diffrob.worlds.settled`: ``autocast: auto`` resolved)."""
    return {k: v for k, v in worlds.settled(p).as_dict().items() if k not in store.NOT_RESULT}


def paper_value(entry: Mapping[str, Any], world: str) -> str:
    """The paper's value of a claim for ``world`` (its own where the paper has one, else CIFAR-10's)."""
    value = entry["paper"]
    if isinstance(value, Mapping):
        return str(value.get(world, value["cifar10"]))
    return str(value)


def effect(entry: Mapping[str, Any], world: str) -> float | None:
    """The effect a claim tests in ``world``: the paper's distance from the bar
    (``paper_effect``; its own world's where given, else CIFAR-10's), or the half-width of
    a ``within`` window; ``None`` where the paper gives no number."""
    c = entry["criterion"]
    if c["kind"] == "within":
        return (c["hi"] - c["lo"]) / 2
    value = entry["paper_effect"]
    if isinstance(value, Mapping):
        value = value.get(world, value["cifar10"])
    return None if value is None else float(value)


def _power_text(mde: float | None, needed: float | None, scale: float, unit: str,
                tested: bool) -> tuple[str, str]:
    """The MDE and n-needed columns of a row."""
    if not tested or mde is None:
        return "", ""
    m = f"{scale * mde:.3g}{unit}" if math.isfinite(mde) else "inf"
    if needed is None:
        return m, "no paper number"
    return m, f"{math.ceil(needed):,}" if math.isfinite(needed) else "inf"


def judge(section: str, claim: str, ours: Estimate | Mapping[str, Estimate] | None,
          world: str = "cifar10") -> dict[str, Any]:
    """The row of one claim: the paper's side, ours with its interval, the verdict, and the
    power (MDE, n needed; see :mod:`diffrob.verdicts`).

    ``ours`` is one :class:`~diffrob.verdicts.Estimate`, a mapping part -> Estimate for
    a claim with parts (every attack, every sampler; see :func:`verdicts.all_of`), or
    ``None`` when the claim cannot be tested in this world. A part is underpowered when it
    is undecided and its MDE exceeds the claim's effect; the claim's MDE and n needed are
    the largest over its undecided parts (over all parts when every part is decided).
    """
    entry = spec(section, claim)
    scale, unit = float(entry.get("scale", 1)), str(entry.get("unit", ""))
    criterion, size = _decision(entry["criterion"]), effect(entry, world)
    row = {"section": section, "claim": claim, "words": entry["words"],
           "paper": paper_value(entry, world), "quantity": entry["quantity"],
           "criterion": verdicts.describe(criterion, scale, unit),
           "registered": registration(entry["criterion"], world), "source": entry["source"],
           "effect": size, "estimate": None, "parts": {}, "mde": None, "n_needed": None}
    if isinstance(ours, Estimate):
        estimates = {"": ours}
    elif ours is None or (isinstance(ours, Mapping) and ours
                          and all(isinstance(e, Estimate) for e in ours.values())):
        estimates = dict(ours or {})
    else:
        raise ValueError(f"ours: expected an Estimate, a non-empty mapping of Estimates or None "
                         f"for claim {claim!r}, got {ours!r}")
    parts = {name: {**e.as_dict(),
                    "verdict": verdicts.powered(verdicts.decide(criterion, e), e, size),
                    "mde": verdicts.mde(e), "n_needed": verdicts.n_needed(e, size)}
             for name, e in estimates.items()}
    undecided = [q for q in parts.values() if q["verdict"] not in (verdicts.HOLDS, verdicts.FAILS,
                                                                   verdicts.NOT_TESTED)]
    tested = [q for q in parts.values() if q["verdict"] != verdicts.NOT_TESTED]
    weakest = undecided or tested
    if weakest:
        row["mde"] = max(q["mde"] for q in weakest)
        row["n_needed"] = None if size is None else max(q["n_needed"] for q in weakest)
    if ours is None:
        row.update(ours="not measured here", verdict=verdicts.NOT_TESTED)
    elif isinstance(ours, Estimate):
        row.update(ours=ours.text(scale, unit), estimate=ours.as_dict(),
                   verdict=parts[""]["verdict"])
    else:
        row.update(ours="; ".join(f"{name}: {e.text(scale, unit)}" for name, e in ours.items()),
                   parts=parts, verdict=verdicts.all_of(q["verdict"] for q in parts.values()))
    row["MDE"], row["n needed"] = _power_text(row["mde"], row["n_needed"], scale, unit,
                                              bool(tested))
    return row


COLUMNS = ["words", "paper", "ours", "criterion", "source", "verdict", "MDE", "n needed"]


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of :func:`record` or :func:`table` as a table, one line per claim id."""
    return pd.DataFrame(rows, columns=["claim", *COLUMNS]).set_index("claim")


def _folder(p: Params, digest: str | None = None) -> Path:
    return p.store_dir / "claims" / (digest or params_digest(p))


def _write_json(path: Path, value: Any) -> None:
    """Atomic write under a unique temporary name in the same folder (no two writers collide)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: damaged claims file ({e}); delete it and rerun the chapter "
                         "that records it") from None


PROTOCOL = re.compile(r"[a-z0-9][a-z0-9 =,-]*")   # names of further protocols: file-safe


def record(p: Params, section: str, claim: str,
           ours: Estimate | Mapping[str, Estimate] | None,
           protocol: str | None = None) -> dict[str, Any]:
    """Judge one claim (see :func:`judge`) and store its row under this parameter set.

    ``protocol`` names a judgement of the claim under another attack protocol than the
    paper's (for example chapter 4b's strongest): stored beside the claim's own row as
    ``<claim>@<protocol>.json`` and read back by :func:`table` under the row's ``protocols``.
    The claim's own row is recorded first: recording it removes those of other protocols,
    which the chapter then records anew (none outlives the code that wrote it).
    """
    if protocol is not None and not PROTOCOL.fullmatch(protocol):
        raise ValueError(f"protocol: expected lower-case letters, digits, spaces, '=', ',' or "
                         f"'-', got {protocol!r}")
    row = {**judge(section, claim, ours, p.world), "protocol": protocol}
    folder = _folder(p)
    if not (folder / "params.json").exists():
        _write_json(folder / "params.json", settings(p))
    name = claim if protocol is None else f"{claim}@{protocol}"
    if protocol is None:
        for old in (folder / section).glob(f"{claim}@*.json"):
            old.unlink(missing_ok=True)
    _write_json(folder / section / f"{name}.json", row)
    return row


def _measured(row: Mapping[str, Any]) -> Estimate | dict[str, Estimate] | None:
    """What a stored row of :func:`judge` measured: its Estimate, its parts' or None."""
    fields = ("value", "lo", "hi", "n", "method")
    if row.get("estimate"):
        return Estimate(**{k: row["estimate"][k] for k in fields})
    if row.get("parts"):
        return {name: Estimate(**{k: q[k] for k in fields}) for name, q in row["parts"].items()}
    return None


def _judged_again(path: Path, world: str) -> dict[str, Any]:
    """The row stored at ``path`` judged again by :func:`judge` under today's criteria; a row
    recorded before rows kept their measurement (no ``estimate`` field) is shown as stored,
    with the criterion it was judged by."""
    stored = _read_json(path)
    if "estimate" not in stored:
        return stored
    section, claim = path.parent.name, path.stem.split("@", 1)[0]
    try:
        ours = _measured(stored)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: damaged claims file (no measurement: {e!r}); delete it and "
                         "rerun the chapter that records it") from None
    return {**judge(section, claim, ours, world), "protocol": stored.get("protocol")}


def _rows(folder: Path, world: str) -> list[dict[str, Any]]:
    rows = []
    for section in SECTIONS:
        if not (folder / section).is_dir():
            continue
        order = {c: i for i, c in enumerate(specs(section))}   # claims no longer in
        files = sorted((f for f in (folder / section).glob("*.json") if f.stem in order),
                       key=lambda f: order[f.stem])            # paper_data are left out
        for f in files:
            row = _judged_again(f, world)
            others = sorted(folder.joinpath(section).glob(f"{f.stem}@*.json"))
            row["protocols"] = {o.stem.split("@", 1)[1]: _judged_again(o, world)
                                for o in others}
            rows.append(row)
    return rows


def table(p: Params, digest: str | None = None) -> list[dict[str, Any]]:
    """Every claim recorded for this world under one parameter set (default: ``p``'s).

    Rows come in the book's order: by section, then as listed in ``paper_data``; rows of
    claims no longer in ``paper_data`` are left out. Each is judged again from its stored
    measurement under today's criteria.
    """
    return _rows(_folder(p, digest), p.world)


def parameter_sets(p: Params) -> dict[str, dict[str, Any]]:
    """Every parameter set with recorded claims in this world: digest -> its parameters."""
    root = p.store_dir / "claims"
    if not root.is_dir():
        return {}
    return {f.name: _read_json(f / "params.json") if (f / "params.json").exists() else {}
            for f in sorted(root.iterdir()) if f.is_dir()}


def default_digests(results_dir: str | Path, worlds: tuple[str, ...],
                    params_dir: str | Path = "params") -> dict[str, str]:
    """Each world's digest of its default parameter file ``<params_dir>/<world>.yaml``.

    Worlds without such a file are left out.
    """
    out = {}
    for world in worlds:
        path = Path(params_dir) / f"{world}.yaml"
        if path.is_file():
            out[world] = params_digest(params_module.load(path, results_dir=str(results_dir)))
    return out


def cross_world(results_dir: str | Path, digests: Mapping[str, str]) -> pd.DataFrame:
    """One row per claim, the paper's value, then per world: ours (with interval) and verdict
    (the claim's words are :func:`table`'s; the Summary shows them once, not per world).

    ``digests`` maps each world to the parameter set whose claims it shows
    (``<results_dir>/<world>/claims/<digest>``). Worlds with no recorded claims get
    no columns; claims no world recorded get no row.
    """
    found: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for world, digest in digests.items():
        rows = _rows(Path(results_dir) / world / "claims" / digest, world)
        if rows:
            found[world] = {(r["section"], r["claim"]): r for r in rows}
    keys = [(s, c) for s in SECTIONS for c in specs(s)
            if any((s, c) in rows for rows in found.values())]
    columns = {("paper (CIFAR-10)", "value"): [paper_value(spec(s, c), "cifar10") for s, c in keys]}
    for world, rows in found.items():
        columns[(world, "ours")] = [rows[k]["ours"] if k in rows else "" for k in keys]
        columns[(world, "verdict")] = [rows[k]["verdict"] if k in rows else "" for k in keys]
    index = pd.MultiIndex.from_tuples(keys, names=["section", "claim"])
    return pd.DataFrame(columns, index=index)
