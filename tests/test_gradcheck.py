"""Gradient checks (Carlini et al. 2019): they pass on the real code and catch wrong ones."""

import pytest
import torch

from diffrob.attacks import gradcheck

from conftest import tiny_world


def test_the_full_gradient_passes_every_check():
    table = gradcheck.checks(tiny_world(2), n_images=2, eot=2, directions=3)
    judged = table["passes"].dropna()
    assert len(judged) == 6 and judged.all(), table
    assert -1 <= table.loc["cosine(full, BPDA gradient), mean over images", "value"] <= 1


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
