"""The paper's regime (paper_data/setup.yaml, regime:): the rule on made-up measures, the
measurement on a tiny world, and the shipped parameter files following it."""

from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_world
from diffrob import params, worlds
from diffrob.setup import analysis_regime as regime
from diffrob.setup import runs_regime

ROOT = Path(__file__).resolve().parents[1]


def measures(accuracy, length, purifier_l2=1.0, start=4):
    """Made-up measures on the grid start, start + 4, ... (alpha_bar of a 100-step schedule
    with alpha_bar(10) = 0.897)."""
    alphas = np.linspace(0.999, 0.0, 100)
    alphas[9] = 0.897
    eps = np.arange(start, start + 4 * len(accuracy), 4, dtype=float)
    return regime.Measures(alphas, purifier_l2, eps, np.array(accuracy, dtype=float),
                           np.array(length, dtype=float)[:, None] * [0.5, 1.0, 1.5])


def test_the_rule_takes_the_smallest_breaking_multiple_of_8():
    # 4, 8, ..., 28: broken first at 12 (not a multiple of 8), then at 16
    m = measures([0.9, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    d = regime.derive(m)
    assert d["t_star"] == 10
    assert d["eps_255"] == 16
    assert d["cap_radius"] == pytest.approx(3 * 0.4)    # 3x the median length at 16/255


def test_the_rule_finds_no_eps_where_the_bare_classifier_stays_accurate():
    m = measures([0.9, 0.5, 0.2], [0.1, 0.2, 0.3])
    d = regime.derive(m)
    assert np.isnan(d["eps_255"]) and np.isnan(d["cap_radius"])


def test_sec31_radius_is_the_ratio_closest_to_the_papers_in_log():
    paper = regime.rule()["distance_ratio"]["paper"]
    # ratios purifier_l2 / length: 6, 3.2, 2.1 -> 3.2 is the closest to 3.03
    m = measures([0.5, 0.5, 0.5], [1 / 6, 1 / 3.2, 1 / 2.1])
    assert regime.derive(m)["distances_eps_255"] == 8
    # 4.5 and 2.05: log(4.5 / 3.03) = 0.40 > log(3.03 / 2.05) = 0.39
    m = measures([0.5, 0.5], [1 / 4.5, 1 / 2.05])
    assert paper == pytest.approx(3.03)
    assert regime.derive(m)["distances_eps_255"] == 8


def test_measure_stops_once_both_rules_are_decided_past_the_params_radii():
    world = tiny_world(4, attack_steps=2, eps_255=16.0)
    m = runs_regime.measure(world, np.array([4.0, 8.0, 12.0, 16.0, 24.0, 32.0]))
    assert 16.0 in m.eps_255                       # the parameters' own radius is measured
    assert len(m.eps_255) == len(m.bare_accuracy) == len(m.lengths) >= 4
    assert m.lengths.shape[1] == 4
    assert np.all(np.diff(m.attack_l2) > 0)        # a longer ball, a longer attack
    assert m.purifier_l2 > 0
    table = regime.table(m, world.params)
    assert list(table.columns) == ["paper (cifar10)", "band", "ours", "in the band",
                                   "the rule gives"]
    assert table.loc["alpha_bar(t*)", "paper (cifar10)"] == "0.8970"


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_shipped_params_follow_the_regime_rule(name):
    """params/digits.yaml and params/mnist.yaml: t*, eps and sec. 3.1's eps are the rule's,
    measured on the shipped models and the file's n_images test images."""
    p = params.load(ROOT / "params" / f"{name}.yaml", model_dir=str(ROOT / "models"),
                    device="cpu")
    d = regime.derive(runs_regime.measure(worlds.from_params(p)))
    assert (d["t_star"], d["eps_255"], d["distances_eps_255"]) == (
        p.t_star, p.eps_255, p.distances_eps_255)
    assert p.cap_radius == pytest.approx(d["cap_radius"], rel=0.01)
