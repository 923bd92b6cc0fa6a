"""The paper's regime, and the parameters that put a world in it (Table S1, Table S2, sec. 5):
pure, on a world's measured numbers (:mod:`.runs_regime`).

The rule is the ``regime:`` block of ``paper_data/setup.yaml``: the noise level alpha_bar(t*)
sets t*; the bare classifier broken by Table S1's PGD sets the attack radius eps; the ratio of
the purifier's own l2 distance to the attack's l2 (Table S2: 3.598 / 1.188) sets the radius of
sec. 3.1's attacks; three times the attack's l2 sets sec. 5's slice radius. :func:`derive`
applies the rule to a world's :class:`Measures`, and :func:`table` sets each ratio beside the
paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import claims
from . import analysis

MAX_EPS_255 = 128   # the grid's end: the largest uniform noise of Table S2


def rule() -> dict[str, Any]:
    """The ``regime:`` block of ``paper_data/setup.yaml``."""
    return claims.paper("setup")["regime"]


@dataclass
class Measures:
    """A world's regime numbers: alpha_bar of every t, the purifier's own mean l2 distance
    (clean images purified), and per radius of the grid (units of 1/255) the bare classifier's
    accuracy under Table S1's PGD and that attack's l2 per image (``lengths``, radii x images)."""

    alphas_cumprod: np.ndarray
    purifier_l2: float
    eps_255: np.ndarray
    bare_accuracy: np.ndarray
    lengths: np.ndarray

    @property
    def attack_l2(self) -> np.ndarray:
        """The attack's mean l2 per radius (Table S2's init column)."""
        return self.lengths.mean(axis=1)


def radius_per_length() -> float:
    """Sec. 5's slice radius over the typical attack length (``paper_data/sec5.yaml``: 3 / 1)."""
    sec5 = claims.paper("sec5")["cifar10"]
    return sec5["cap_radius"] / sec5["typical_attack_l2"]


def grid() -> np.ndarray:
    """The radii measured: every multiple of the finer of the two eps rules' steps."""
    r = rule()
    step = min(r["bare_broken"]["eps_step_255"], r["distance_ratio"]["eps_step_255"])
    return np.arange(step, MAX_EPS_255 + step, step, dtype=float)


def on_step(eps_255: float, name: str) -> bool:
    """Whether ``eps_255`` is a multiple of the step of the rule ``name``."""
    return bool(np.isclose(eps_255 % rule()[name]["eps_step_255"], 0))


def derive(m: Measures) -> dict[str, float]:
    """The parameters the rule gives: ``t_star`` (alpha_bar closest to the paper's),
    ``eps_255`` (the smallest multiple of its step at which the bare classifier's accuracy is
    below the bar; ``nan`` where none on the grid is), ``distances_eps_255`` (the multiple of
    its step whose distance ratio is closest to the paper's in log) and ``cap_radius``
    (sec. 5's rule: :func:`radius_per_length` times the attack's median l2 at ``eps_255``, as
    chapter 5's :func:`diffrob.cap.analysis.rule_radius`)."""
    r = rule()
    t_star = int(np.argmin(np.abs(m.alphas_cumprod - r["noise_level"]["paper"]))) + 1
    on = lambda name: np.array([on_step(e, name) for e in m.eps_255], dtype=bool)
    broken = on("bare_broken") & (m.bare_accuracy < r["bare_broken"]["below"])
    eps = float(m.eps_255[broken][0]) if broken.any() else math.nan
    ratio = m.purifier_l2 / m.attack_l2
    candidates = np.flatnonzero(on("distance_ratio"))
    closest = candidates[np.argmin(np.abs(np.log(ratio[candidates] /
                                                 r["distance_ratio"]["paper"])))]
    factor = radius_per_length()
    radius = (factor * float(np.median(m.lengths[np.flatnonzero(m.eps_255 == eps)[0]]))
              if eps == eps else math.nan)
    return {"t_star": t_star, "eps_255": eps,
            "distances_eps_255": float(m.eps_255[closest]), "cap_radius": radius}


def table(m: Measures, p) -> pd.DataFrame:
    """Each ratio of the rule at the world's parameters ``p`` beside the paper's (CIFAR-10),
    its band, whether it holds, and what the rule derives from the world's measures."""
    r, d = rule(), derive(m)
    at = lambda values, eps_255: float(np.interp(eps_255, m.eps_255, values))
    sec31 = p.sec31_eps_255
    ratio = lambda eps_255: m.purifier_l2 / at(m.attack_l2, eps_255)
    inside = lambda value, lo, hi: "yes" if lo <= value <= hi else "no"
    noise = analysis.alpha_bar(torch.as_tensor(m.alphas_cumprod), p.t_star)
    bar = r["bare_broken"]["below"]
    rows = [
        ("alpha_bar(t*)", f"{r['noise_level']['paper']:.4f}",
         "{:.2f}-{:.2f}".format(*r["noise_level"]["band"]), f"{noise:.4f} (t* = {p.t_star})",
         inside(noise, *r["noise_level"]["band"]), f"t* = {d['t_star']}"),
        ("bare classifier under PGD", "0 %", f"below {100 * bar:g} %",
         f"{100 * at(m.bare_accuracy, p.eps_255):.1f} % (eps {p.eps_255:g}/255)",
         "yes" if at(m.bare_accuracy, p.eps_255) < bar else "no",
         f"eps = {d['eps_255']:g}/255" if d["eps_255"] == d["eps_255"]
         else f"none up to {m.eps_255[-1]:g}/255"),
        ("purifier's l2 / attack's l2, secs. 4-6", f"{r['distance_ratio']['paper']:.2f}",
         "{:.2f}-{:.2f}".format(*r["distance_ratio"]["band"]),
         f"{ratio(p.eps_255):.2f} (eps {p.eps_255:g}/255)",
         inside(ratio(p.eps_255), *r["distance_ratio"]["band"]),
         "" if inside(ratio(p.eps_255), *r["distance_ratio"]["band"]) == "yes"
         else "gives way to the row above"),
        ("purifier's l2 / attack's l2, sec. 3.1", f"{r['distance_ratio']['paper']:.2f}",
         "{:.2f}-{:.2f}".format(*r["distance_ratio"]["band"]),
         f"{ratio(sec31):.2f} (eps {sec31:g}/255)",
         inside(ratio(sec31), *r["distance_ratio"]["band"]),
         f"sec. 3.1's eps = {d['distances_eps_255']:g}/255"),
        ("sec. 5 slice radius / attack's median l2",
         f"{radius_per_length():g}", "the rule",
         f"{p.cap_radius / np.median(m.lengths[list(m.eps_255).index(p.eps_255)]):.2f} "
         f"(radius {p.cap_radius:g})",
         "yes" if math.isclose(p.cap_radius, d["cap_radius"], rel_tol=0.05) else "no",
         f"radius = {d['cap_radius']:.2f}" if d["cap_radius"] == d["cap_radius"]
         else "none (no eps)"),
    ]
    return pd.DataFrame(rows, columns=["ratio", "paper (cifar10)", "band", "ours",
                                       "in the band", "the rule gives"]).set_index("ratio")
