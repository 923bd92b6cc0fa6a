"""Sec. 6's mechanism claims: the statistics behind each criterion on fabricated data where the
paper's claim holds and where it does not, the clamp's zeros in the spectrum, and eq. 4's
linearisation error on maps with a known answer."""

import math

import pytest
import torch

from diffrob import claims, verdicts
from diffrob.compression import analysis as C
from diffrob.compression import analysis_boundary as B

SHAPE = (1, 2, 3)   # D = 6


def verdict(claim: str, ours) -> str:
    return claims.judge("sec6", claim, ours)["verdict"]


def matrix_map(a: torch.Tensor, b: torch.Tensor | None = None, clamp: bool = False):
    """f(x) = A x + b on flattened images, clamped to [0,1] as the purifier's output if asked."""
    def f(x):
        y = x.flatten(1) @ a.T.to(x.dtype) + (0 if b is None else b.to(x.dtype))
        return (y.clamp(0, 1) if clamp else y).view(x.shape[0], *SHAPE)
    return f


# --- the clamp's zeros -------------------------------------------------------------------

def test_clamped_pixels_add_exact_zeros_that_drop_saturated_removes():
    g = torch.Generator().manual_seed(0)
    a = 0.1 * torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.tensor([0.5, 0.5, 0.5, 0.5, 5.0, -5.0], dtype=torch.float64)  # two pixels clamped
    f = matrix_map(a, b, clamp=True)
    x0 = torch.full((1, *SHAPE), 0.5, dtype=torch.float64)
    held = C.saturated_pixels(f(x0))
    assert held.tolist() == [[False, False, False, False, True, True]]
    spectrum = C.jacobian_spectrum(C.jacobian(f, x0))
    dropped = C.drop_saturated(spectrum.eigenvalues.view(1, -1), held.sum(1))
    free = torch.linalg.eigvals(a[:4, :4]).abs().sort(descending=True).values
    torch.testing.assert_close(dropped[0, :4], free)
    assert torch.isnan(dropped[0, 4:]).all()
    # the shares count the unsaturated values only
    assert C.share(dropped, 1e-9).item() == 0.0
    assert C.share(spectrum.eigenvalues.view(1, -1), 1e-9).item() == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="saturated"):
        C.drop_saturated(spectrum.eigenvalues.view(1, -1), torch.tensor([6]))


def test_share_above_and_below_skip_nan():
    v = torch.tensor([[2.0, 0.5, 0.1, math.nan], [0.2, 0.2, 0.2, 0.2]], dtype=torch.float64)
    assert C.share(v, 0.25).tolist() == [1 / 3, 1.0]
    assert C.share(v, 1.0, above=True).tolist() == [1 / 3, 0.0]


# --- eq. 4: the linearisation error -------------------------------------------------------

def test_linearisation_error_is_zero_for_an_affine_map_and_not_for_a_curved_one():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    x0 = torch.full((1, *SHAPE), 0.5, dtype=torch.float64)
    eta = 0.05 * torch.randn((8, *SHAPE), generator=g, dtype=torch.float64)
    affine = C.linearisation_error(matrix_map(a, torch.ones(6, dtype=torch.float64)), x0, eta)
    assert affine.max() < 1e-12

    def curved(x):
        return torch.sin(8 * x)
    small, large = (C.linearisation_error(curved, x0, s * eta) for s in (0.1, 1.0))
    assert (large > 0.05).all() and (small < large).all()   # the remainder grows with eta
    given = C.linearisation_error(curved, x0, eta, moved=curved(x0 + eta) - curved(x0))
    torch.testing.assert_close(given, large)               # the caller's outputs, the same
    assert verdict("linearisation_holds", verdicts.mean(affine)) == verdicts.HOLDS
    nonlinear = C.linearisation_error(lambda x: torch.sin(80 * x), x0, eta)
    assert verdict("linearisation_holds", verdicts.mean(nonlinear)) == verdicts.FAILS


def test_perturbation_response_of_a_contraction():
    """f(x) = x / 2: every rate is 0.5 at both radii, eq. 4 exact, no pixel clamped; with a
    clamped pixel the all-pixel rate falls below the unsaturated one."""
    x0 = torch.full((1, *SHAPE), 0.5, dtype=torch.float64)
    r = C.perturbation_response(lambda x: x / 2, x0, 0.1, 5,
                                generator=torch.Generator().manual_seed(2))
    for rates in (r.rate, r.rate_unsaturated, r.rate_small):
        torch.testing.assert_close(rates, torch.full((1, 5), 0.5, dtype=torch.float64))
    assert r.linear_error.max() < 1e-12 and r.saturated.tolist() == [0]
    b = torch.tensor([0, 0, 0, 0, 0, 5.0], dtype=torch.float64)
    held = C.perturbation_response(matrix_map(0.5 * torch.eye(6, dtype=torch.float64), b, True),
                                   x0, 0.1, 5, generator=torch.Generator().manual_seed(2))
    assert held.saturated.tolist() == [1] and (held.rate < held.rate_unsaturated).all()
    torch.testing.assert_close(held.rate_unsaturated, torch.full((1, 5), 0.5, dtype=torch.float64))
    assert C.stack([r, held]).rate.shape == (2, 5)


# --- the criteria on both sides -----------------------------------------------------------

def test_rule_agreement_against_the_base_rate():
    robust = torch.tensor([True] * 30 + [False] * 20)
    critical = torch.ones(50, dtype=torch.float64)
    right = torch.where(robust, 0.5, 1.5).double()              # the rule is always right
    est = B.rule_agreement(robust, critical, right)
    assert est.value == pytest.approx(1 - 30 / 50)
    assert verdict("rule_agreement", est) == verdicts.HOLDS
    wrong = torch.where(robust, 1.5, 0.5).double()              # always wrong
    assert verdict("rule_agreement", B.rule_agreement(robust, critical, wrong)) == verdicts.FAILS


def test_compress_expand_tests_both_sides_of_one():
    robust = torch.tensor([True] * 40 + [False] * 40)
    attack = torch.ones(80, dtype=torch.float64)
    noise = 0.05 * torch.randn(80, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    paper = torch.where(robust, 0.655, 1.3).double() + noise   # compressed vs expanded
    est = B.compress_expand(paper, attack, robust)
    assert est.value == pytest.approx(min(1 - paper[robust].mean(), paper[~robust].mean() - 1))
    assert verdict("robust_compress_nonrobust_expand", est) == verdicts.HOLDS
    both_compressed = torch.where(robust, 0.5, 0.8).double() + noise
    assert verdict("robust_compress_nonrobust_expand",
                   B.compress_expand(both_compressed, attack, robust)) == verdicts.FAILS
    ratios = B.length_ratios(both_compressed, attack, robust)
    assert ratios["difference"].value == pytest.approx(
        ratios["non-robust"].value - ratios["robust"].value)
    one_group = B.compress_expand(paper, attack, torch.ones(80, dtype=torch.bool))
    assert verdict("robust_compress_nonrobust_expand", one_group) == verdicts.NOT_TESTED


def test_spectral_shares_against_their_bars():
    spectra = torch.full((20, 100), 0.1, dtype=torch.float64)
    few = spectra.clone()
    few[::4, 0] = 2.0                                    # 1 of 100 above 1 in a quarter of them
    assert verdict("few_eigenvalues_above_one",
                   verdicts.mean(C.share(few, 1.0, above=True))) == verdicts.HOLDS
    many = spectra.clone()
    many[:, :5] = 2.0                                    # 5 % above 1
    assert verdict("few_eigenvalues_above_one",
                   verdicts.mean(C.share(many, 1.0, above=True))) == verdicts.FAILS
    assert verdict("eigenvalues_below_quarter", verdicts.mean(C.share(few, 0.25))) == verdicts.HOLDS
    assert verdict("eigenvalues_below_quarter", verdicts.mean(C.share(many + 0.5, 0.25))) \
        == verdicts.FAILS


def test_pca_variances_small_against_most_below_a_quarter():
    small = torch.tensor([0.8, 0.4] + [0.05] * 48, dtype=torch.float64)
    assert verdict("pca_eigenvalues_small", verdicts.proportion(small < 0.25)) == verdicts.HOLDS
    assert verdict("pca_eigenvalues_small", verdicts.proportion(small + 0.5 < 0.25)) \
        == verdicts.FAILS


def test_spectra_alike_and_compression_predicts_robustness():
    g = torch.Generator().manual_seed(4)
    robust = torch.arange(400) % 2 == 0
    same = torch.rand(400, generator=g, dtype=torch.float64)
    alike = {"largest": verdicts.auc(same, robust), "share": verdicts.auc(same.flip(0), robust)}
    assert verdict("spectra_alike_robust_nonrobust", alike) == verdicts.HOLDS
    apart = {**alike, "share": verdicts.auc(same + robust.double(), robust)}
    assert verdict("spectra_alike_robust_nonrobust", apart) == verdicts.FAILS
    rate = same + 0.5 * (~robust).double()                # robust images compress more
    assert verdict("compression_predicts_robustness", verdicts.auc(-rate, robust)) \
        == verdicts.HOLDS
    assert verdict("compression_predicts_robustness", verdicts.auc(rate, robust)) \
        == verdicts.FAILS


def test_every_new_claim_is_registered_post_hoc_with_an_effect_or_a_window():
    for claim in ("rule_agreement", "robust_compress_nonrobust_expand",
                  "few_eigenvalues_above_one", "pca_eigenvalues_small",
                  "spectra_alike_robust_nonrobust", "compression_predicts_robustness",
                  "linearisation_holds"):
        entry = claims.spec("sec6", claim)
        assert entry["criterion"]["registered"] == "post hoc (2026-12-04)"
        assert entry["criterion"]["kind"] == "within" or "paper_effect" in entry
