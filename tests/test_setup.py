"""Tests of the setup wing (sec. 2): its small computations, its runs on a tiny randomly
initialised digits world, and the report's tables."""

import numpy as np
import pytest
import torch

from conftest import tiny_world
from diffrob import claims, purifiers, store, verdicts
from diffrob.figures import Table
from diffrob.params import PURIFIERS
from diffrob.setup import analysis, report, runs


def test_shown_steps_are_inside_the_purification():
    assert analysis.shown_steps(10) == [5, 10, 15]
    assert analysis.shown_steps(1) == [0, 1]
    assert analysis.shown_steps(100) == [50, 100, 150]


def test_pairs_of_samplers():
    assert analysis.pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert len(analysis.pairs(PURIFIERS)) == 6
    with pytest.raises(ValueError, match="distinct"):
        analysis.pairs(["a", "a"])


def test_alpha_bar_and_parameters():
    assert analysis.alpha_bar(torch.tensor([0.9, 0.8, 0.5]), 2) == pytest.approx(0.8)
    assert analysis.n_parameters(torch.nn.Linear(3, 2)) == 8
    flags = analysis.correct(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3]))
    assert flags.tolist() == [True, False, True] and isinstance(flags, np.ndarray)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(4, batch_size=2, t_star=2,
                      results_dir=str(tmp_path_factory.mktemp("results")))


def test_first_states_keep_the_first_batches_trajectory(world):
    x = world.images
    states = purifiers.first_states(world, x, 3)
    assert states.shape == (2 * 2 + 1, 3, 1, 8, 8)
    first = world.purifier().trajectory(x[:2], world.params.base_seed, 0)
    assert torch.equal(states[:, :2], first)
    assert torch.equal(states[-1], purifiers.purify(world, x)[:3])
    with pytest.raises(ValueError, match="keep"):
        purifiers.first_states(world, x, 0)


def test_purification_examples(world):
    ex = runs.purification_examples(world, 3)
    assert ex.perturbed.shape == (3, 1, 8, 8)
    assert (ex.perturbed - world.images[:3]).abs().max() <= world.params.eps + 1e-6
    assert list(ex.states) == [1, 2, 3] and list(ex.purified) == list(PURIFIERS)
    assert all(v.shape == (3, 1, 8, 8) for v in [*ex.states.values(), *ex.purified.values()])


def test_clean_correct_averages_each_purifier_over_the_r_stored_runs(world):
    from diffrob import stages

    correct = runs.clean_correct(world, progress=False)
    assert list(correct) == ["bare", *PURIFIERS]
    assert all(c.shape == (4,) and ((c >= 0) & (c <= 1)).all() for c in correct.values())
    bare = (world.predict(world.images) == world.labels).cpu().numpy()
    assert np.array_equal(correct["bare"], bare)
    labels = world.labels.cpu().numpy()
    ddpm = stages.evaluations(world, "clean", progress=False)   # Table 1's clean row, stored
    assert ddpm.shape == (world.params.n_evals, 4)
    assert np.array_equal(correct["ddpm"], (ddpm == labels).mean(axis=0))
    done = [(e["stage"], e["key"], e["batch"]) for e in store.computed(world.params)]
    assert {d[0] for d in done} == {"evaluate/clean"}   # DiffPure's runs once, for both uses
    assert len(done) == len(set(done)) == len(PURIFIERS) * 2


def test_world_table(world):
    t = report.world_table(world)
    assert isinstance(t, Table) and t.name == "tbl-setup-world"
    assert t.frame.loc["t*", "ours"] == 2 and t.frame.loc["t*", "paper (cifar10)"] == 100
    assert t.frame.loc["test images", "ours"] == 4
    assert t.frame.loc["world", "paper (cifar10)"] == "cifar10"
    assert t.frame.loc["alpha_bar(t*)", "paper (cifar10)"] == "0.8970"


@pytest.fixture(scope="module")
def accuracy(world):
    return report.accuracy(world)


def test_accuracy_table(accuracy):
    t = report.accuracy_table(accuracy)
    assert isinstance(t, Table) and t.name == "tbl-setup-accuracy"
    assert list(t.frame.index) == ["bare classifier", *[f"purified: {m}" for m in PURIFIERS]]
    paper = t.frame["paper (cifar10) (%)"]
    assert paper["bare classifier"] == "94.78" and paper["purified: ddpm"] == "85.75 ± 0.82"
    bare = 100 * accuracy.correct["bare"].mean()
    assert t.frame.iloc[0, 0].startswith(f"{bare:.2f} [")


def test_claims_table_and_said(accuracy):
    t = report.claims_table(accuracy)
    assert isinstance(t, Table) and t.name == "tbl-setup-claims"
    assert list(t.frame.index) == ["purification_costs_accuracy", "samplers_comparable"]
    row = {r["claim"]: r for r in claims.table(accuracy.p)}["samplers_comparable"]
    assert list(row["parts"]) == [f"{m} - {n}" for m, n in analysis.pairs(PURIFIERS)]
    c = accuracy.correct
    assert row["parts"]["ddpm - ddim"]["lo"] == verdicts.paired_difference(c["ddpm"],
                                                                           c["ddim"]).lo
    said = report.setup_said(accuracy)
    assert said["setup_bare"] == f"{100 * accuracy.correct['bare'].mean():.1f} %"
    assert said["setup_samplers"].startswith("ddpm ")
