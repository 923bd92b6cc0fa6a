"""Gradient checks (Carlini et al. 2019): they pass on the real code and catch wrong ones."""

import pytest
import torch

from diffrob import purifiers
from diffrob.attacks import gradcheck

from conftest import tiny_world


def test_the_full_gradient_passes_every_check():
    table = gradcheck.checks(tiny_world(2), n_images=2, eot=2, directions=3)
    judged = table["passes"].dropna()
    assert len(judged) == 7 and judged.all(), table
    assert "full gradient vs central differences (max rel. error)" in judged.index
    assert "the run's gradient (float32) vs float64 (cosine, min over images)" in table.index
    assert -1 <= table.loc["cosine(full, BPDA gradient), mean over images", "value"] <= 1
    assert not any(i.startswith("float32, no autocast") for i in table.index)


def test_a_lower_precision_run_is_shown_beside_float32_at_the_same_point():
    """With bf16 autocast the table also gives float32's cosine to float64: whether a failing
    bf16 row is bf16's or the check point's (there float32 fails too)."""
    table = gradcheck.checks(tiny_world(2, autocast="bf16"), n_images=2, eot=2, directions=3)
    row = "float32, no autocast, vs float64 (cosine, min over images)"
    assert table.loc[row, "value"] >= gradcheck.RUN_COSINE and table.loc[row, "passes if"] == \
        "(reported)"
    assert (table.loc["the run's gradient (bf16) vs float64 (cosine, min over images)", "value"]
            < table.loc[row, "value"])


def check_point(world):
    return world.images.double().clamp(1e-5, 1 - 1e-5), world.labels, [1000, 1001]


def test_the_float64_reference_sees_the_noise_of_the_float32_run():
    """eq. 9's noise is drawn in float32 whatever the precision (torch's CPU randn draws
    other numbers in float64), so the float64 purifier is the float32 one to rounding. The
    reference runs without the world's autocast."""
    assert gradcheck.double_world(tiny_world(1, autocast="bf16")).params.autocast == "none"
    w = tiny_world(2)
    ref = gradcheck.double_world(w)
    x = w.images.clamp(1e-5, 1 - 1e-5)
    run = w.purifier()(x, 1000, 0).double()
    same = ref.purifier()(x.double(), 1000, 0)
    assert same.dtype == torch.float64 and (same - run).abs().max() < 1e-5
    g = torch.Generator().manual_seed(purifiers.seed_for(1000, 0, 1, True))
    drawn = purifiers._NoisePlan([1000], 0, x.double())(1, forward=True)
    assert torch.equal(drawn, torch.randn(x.shape, generator=g).double())


def test_the_run_path_is_checked_in_its_own_precision():
    """The gradient that runs against float64 (sec. 4.2's PGD), in float32 and under CPU bf16
    autocast of the diffusion model (the digits and mnist worlds' setting). Float32 passes its
    tolerance; bf16 keeps the direction (cosine >= 0.99) with an error far above float32's, so
    the check sees the autocast."""
    w32, w16 = tiny_world(2), tiny_world(2, autocast="bf16")
    r32, r16 = (gradcheck.run_path(w, *check_point(w)) for w in (w32, w16))
    assert (gradcheck.run_precision(w32), gradcheck.run_precision(w16)) == ("float32", "bf16")
    assert r32["relative error"].max() <= gradcheck.run_tolerance("float32")
    assert r32["cosine"].min() >= gradcheck.RUN_COSINE and r32["sign"].min() == 1
    assert r16["cosine"].min() >= gradcheck.RUN_COSINE
    assert r16["relative error"].max() > gradcheck.run_tolerance("float32")
    assert 0 <= r16["sign"].min() <= 1


def test_the_bf16_rows_of_the_table_state_bf16s_tolerances():
    """bf16 has 8 significant bits: relative error <= 2^-4, cosine >= 0.99 (module docstring)."""
    assert gradcheck.run_tolerance("bf16") == 2 ** -4
    table = gradcheck.checks(tiny_world(2, autocast="bf16"), n_images=2, eot=2, directions=3)
    rows = table[table.index.str.startswith("the run's gradient (bf16) vs float64")]
    assert list(rows["passes if"]) == [">= 0.99", "<= 0.062", "(reported)"]
    cosine, error, _ = rows["value"]
    assert list(rows["passes"][:2]) == [cosine >= 0.99, error <= 2 ** -4]


class Doubled(torch.autograd.Function):
    """Identity forward, twice the true gradient backward: a wrong gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 2 * g


@pytest.mark.parametrize("wrong, error", [(Doubled.apply, 1 / 2),
                                          (lambda x: x.detach() + 0 * x, 1.0)])
def test_finite_differences_catch_wrong_and_masked_gradients(wrong, error):
    """A doubled gradient is off by 1/2 relative, a detached (masked) one by 1."""
    def f(x):
        return (torch.sin(wrong(x)) ** 2).sum()

    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    errors = gradcheck.finite_difference_errors(f, x, 3, 1e-5, torch.Generator().manual_seed(0))
    assert errors == pytest.approx([error] * 3, rel=1e-4)
    assert (errors > gradcheck.FD_TOLERANCE).all()
    right = gradcheck.finite_difference_errors(lambda x: (torch.sin(x) ** 2).sum(), x, 3, 1e-5,
                                               torch.Generator().manual_seed(0))
    assert (right <= gradcheck.FD_TOLERANCE).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="gradient checks"):
        gradcheck.checks(tiny_world(2), n_images=0)
