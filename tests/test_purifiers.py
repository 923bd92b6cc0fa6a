"""The purifiers: eq. 9 seeds, agreement with diffusers' schedulers, gradients, bad input."""

from unittest import mock

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from diffrob import purifiers
from diffrob.purifiers import METHODS, Purifier, check_images, seed_for
from diffrob.worlds import digits

T_STAR = 4


class ConvEps(nn.Module):
    """A tiny eps-model: one conv plus a timestep-dependent bias (smooth, cheap, float64-able)."""

    def __init__(self, channels: int = 1, out_factor: int = 1):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, channels * out_factor, 3, padding=1)
        self.t_scale = nn.Parameter(torch.randn(channels * out_factor) * 0.01)

    def forward(self, x, k):
        return torch.tanh(self.conv(x)) + self.t_scale.view(1, -1, 1, 1) * k.view(-1, 1, 1, 1)


def scheduler(**kw) -> DDPMScheduler:
    return DDPMScheduler(**{**digits.SCHEDULER, **kw})


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return digits.build_unet().eval().requires_grad_(False)


@pytest.fixture
def x():
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_seed_plan_is_eq9():
    assert seed_for(0, 0, 1, True) == 3
    assert seed_for(0, 0, 1, False) == 2
    assert seed_for(2, 3, 5, False) == 2 * 10**4 + 2 * (3 * 10**3 + 5)
    assert seed_for(2, 3, 5, True) == seed_for(2, 3, 5, False) + 1


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_output_bit_for_bit(unet, x, method):
    f = Purifier(unet, scheduler(), method, T_STAR, image_shape=(1, 8, 8))
    y = f(x, base_seeds=3, batch_index=2)
    assert torch.equal(y, f(x.clone(), base_seeds=3, batch_index=2))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    if method != "ddim" and method != "onestep":
        assert not torch.equal(y, f(x, base_seeds=4, batch_index=2))
        assert not torch.equal(y, f(x, base_seeds=3, batch_index=1))


def test_folded_seeds_equal_separate_runs(unet, x):
    """Same noise per chunk; the UNet's float sums may differ in the last bits by batch size."""
    f = Purifier(unet, scheduler(), "ddpm", T_STAR)
    folded = f(torch.cat([x, x, x]), base_seeds=[0, 7, 9], batch_index=1)
    for j, s in enumerate([0, 7, 9]):
        torch.testing.assert_close(folded[j * len(x):(j + 1) * len(x)], f(x, s, 1),
                                   rtol=0, atol=1e-5)
    assert not torch.allclose(folded[:len(x)], folded[len(x):2 * len(x)], atol=1e-3)


def test_shared_noise_makes_rows_one_function(unet, x):
    f = Purifier(unet, scheduler(), "ddpm", T_STAR)
    same = f(x[:1].repeat(4, 1, 1, 1), base_seeds=5, batch_index=0, shared_noise=True)
    assert torch.equal(same, same[:1].expand_as(same))
    torch.testing.assert_close(same[:1], f(x[:1], base_seeds=5, batch_index=0), rtol=0, atol=1e-5)
    rows = f(x[:1].repeat(4, 1, 1, 1), base_seeds=5, batch_index=0)
    assert not torch.equal(rows[0], rows[1])  # per-row noise by default


@pytest.mark.parametrize("variance_type", ["fixed_large", "fixed_small", "learned_range"])
@pytest.mark.parametrize("clip", [True, False])
def test_reverse_process_matches_diffusers_ddpm(x, variance_type, clip):
    """Eq. 2 equals diffusers' DDPMScheduler.step fed the noise of eq. 9's generators."""
    learned = variance_type == "learned_range"
    model = ConvEps(out_factor=2 if learned else 1).eval()
    sched = scheduler(variance_type=variance_type, clip_sample=clip)
    f = Purifier(model, sched, "reverse", T_STAR)
    ours = f(x, base_seeds=2, batch_index=1)
    sched.set_timesteps(sched.config.num_train_timesteps)
    h = 2 * x - 1
    with torch.no_grad():
        for t in range(T_STAR, 0, -1):
            k = torch.full((len(x),), t - 1)
            g = torch.Generator().manual_seed(seed_for(2, 1, t, False))
            h = sched.step(model(h, k), t - 1, h, generator=g).prev_sample
    torch.testing.assert_close(ours, ((h + 1) / 2).clamp(0, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ddim_eps,clipped_output", [("model", False), ("rederived", True)])
def test_ddim_matches_diffusers_ddim(x, ddim_eps, clipped_output):
    """Eq. 10 (eta = 0) after the forward noising equals DDIMScheduler.step: with the model's
    eps as eq. 10 prints it (the default), or with eps re-derived from the clipped x0."""
    model = ConvEps().eval()
    f = Purifier(model, scheduler(), "ddim", T_STAR, ddim_eps=ddim_eps)
    traj = f.trajectory(x, base_seeds=0, batch_index=0)
    ddim = DDIMScheduler(**{k: v for k, v in digits.SCHEDULER.items() if k != "variance_type"})
    ddim.set_timesteps(ddim.config.num_train_timesteps)
    h = 2 * traj[T_STAR] - 1
    clipped = False
    with torch.no_grad():
        for t in range(T_STAR, 0, -1):
            eps = model(h, torch.full((len(x),), t - 1))
            ab = ddim.alphas_cumprod[t - 1].double()
            clipped |= bool(((h - (1 - ab).sqrt() * eps) / ab.sqrt()).abs().max() > 1)
            h = ddim.step(eps, t - 1, h, eta=0.0,
                          use_clipped_model_output=clipped_output).prev_sample
    assert clipped  # otherwise the two variants coincide and the test could not tell them apart
    torch.testing.assert_close(traj[-1], ((h + 1) / 2).clamp(0, 1), rtol=1e-5, atol=1e-5)


def test_ddim_variants_differ_only_where_x0_is_clipped(x):
    model = ConvEps().eval()
    out = {(e, c): Purifier(model, scheduler(clip_sample=c), "ddim", T_STAR, ddim_eps=e)(x)
           for e in ("model", "rederived") for c in (True, False)}
    torch.testing.assert_close(out["model", False], out["rederived", False])
    assert not torch.allclose(out["model", True], out["rederived", True])
    with pytest.raises(ValueError, match="ddim_eps"):
        Purifier(model, scheduler(), "ddim", T_STAR, ddim_eps="clipped")


def test_forward_process_is_eq1(x):
    f = Purifier(ConvEps(), scheduler(), "ddpm", T_STAR)
    traj = f.trajectory(x, base_seeds=1, batch_index=3)
    h = 2 * x - 1
    betas = scheduler().betas.double()
    for t in range(1, T_STAR + 1):
        g = torch.Generator().manual_seed(seed_for(1, 3, t, True))
        b = betas[t - 1].item()
        h = (1 - b) ** 0.5 * h + b**0.5 * torch.randn(x.shape, generator=g)
        torch.testing.assert_close(traj[t], (h + 1) / 2)


def test_onestep_jumps_to_t_star_and_predicts_x0(x):
    model = ConvEps().eval()
    sched = scheduler(clip_sample=False)
    traj = Purifier(model, sched, "onestep", T_STAR).trajectory(x, 0, 0)
    ab = sched.alphas_cumprod.double()[T_STAR - 1].item()
    g = torch.Generator().manual_seed(seed_for(0, 0, T_STAR, True))
    h = ab**0.5 * (2 * x - 1) + (1 - ab) ** 0.5 * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(traj[1], (h + 1) / 2)
    with torch.no_grad():
        x0 = (h - (1 - ab) ** 0.5 * model(h, torch.full((len(x),), T_STAR - 1))) / ab**0.5
    torch.testing.assert_close(traj[2], ((x0 + 1) / 2).clamp(0, 1))


@pytest.mark.parametrize("method,length", [("ddpm", 2 * T_STAR + 1), ("reverse", T_STAR + 1),
                                           ("ddim", 2 * T_STAR + 1), ("onestep", 3)])
def test_trajectory_ends_at_the_output(unet, x, method, length):
    f = Purifier(unet, scheduler(), method, T_STAR)
    traj = f.trajectory(x, 1, 0)
    assert traj.shape == (length, *x.shape)
    assert torch.equal(traj[0], x) or method == "reverse" and torch.allclose(traj[0], x)
    assert torch.equal(traj[-1], f(x, 1, 0))


@pytest.mark.parametrize("method", ["ddpm", "reverse", "ddim", "onestep"])
def test_full_gradient_matches_finite_differences(method):
    """Float64 gradcheck of the differentiable (checkpointed) purifier through every step."""
    model = ConvEps().double().eval()
    f = Purifier(model, scheduler(clip_sample=False), method, 3, checkpointing=True)
    x = 0.25 + 0.5 * torch.rand(2, 1, 8, 8, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(3))
    x.requires_grad_(True)
    w = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.autograd.gradcheck(lambda z: (f(z, 1, 0, grad=True) * w).sum(), (x,),
                                    eps=1e-6, atol=1e-6)


def test_checkpointed_gradient_equals_plain_autograd(unet, x):
    grads = []
    for ckpt in (True, False):
        f = Purifier(unet, scheduler(), "ddpm", T_STAR, checkpointing=ckpt)
        z = x.clone().requires_grad_(True)
        (f(z, 2, 0, grad=True) ** 2).sum().backward()
        grads.append(z.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


class KernelSpy(ConvEps):
    """ConvEps that records whether attention's flash kernel was allowed during each call."""

    def forward(self, x, k):
        self.flash = torch.backends.cuda.flash_sdp_enabled()
        return super().forward(x, k)


@pytest.mark.parametrize("kernel, flash", [(purifiers.CPU_ATTENTION, False), (None, True)])
def test_cpu_attention_kernel_is_the_chosen_one(x, kernel, flash):
    model = KernelSpy().eval()
    with mock.patch.object(purifiers, "CPU_ATTENTION", kernel):
        Purifier(model, scheduler(), "ddpm", 2)(x)
    assert model.flash is flash


@pytest.mark.parametrize("autocast, tol", [("none", 1e-5), ("bf16", 2e-2)])
def test_math_attention_agrees_with_the_default_kernel(unet, x, autocast, tol):
    """The digits UNet's middle-block attention on the math kernel against PyTorch's choice:
    outputs and full gradients equal up to float rounding (bf16: its 8-bit mantissa, which
    also moves a few predicted x_0 across the clipping at +-1, where the gradient jumps: 99 %
    of the gradient's entries agree)."""
    out = {}
    for kernel in (purifiers.CPU_ATTENTION, None):
        with mock.patch.object(purifiers, "CPU_ATTENTION", kernel):
            f = Purifier(unet, scheduler(), "ddpm", T_STAR, checkpointing=False,
                         autocast=autocast)
            z = x.clone().requires_grad_(True)
            y = f(z, 2, 0, grad=True)
            (y ** 2).sum().backward()
            out[kernel] = y.detach(), z.grad
    (y_math, g_math), (y_default, g_default) = out.values()
    assert g_math.abs().sum() > 0
    torch.testing.assert_close(y_math, y_default, rtol=0, atol=tol)
    close = torch.isclose(g_math, g_default, rtol=tol, atol=tol * g_default.abs().max())
    assert close.float().mean() >= (1 if autocast == "none" else 0.99)


def test_no_graph_without_grad(unet, x):
    z = x.clone().requires_grad_(True)
    assert not Purifier(unet, scheduler(), "ddpm", T_STAR)(z).requires_grad


def test_resize_for_a_model_of_another_size():
    model = ConvEps().eval()
    f = Purifier(model, scheduler(), "ddpm", 2, image_shape=(1, 8, 8), model_size=16)
    x = torch.rand(2, 1, 8, 8)
    assert f(x).shape == x.shape
    traj = f.trajectory(x)
    assert traj.shape == (5, 2, 1, 8, 8)
    # state 0 is the input itself, not its bilinear round trip 8 -> 16 -> 8 (which smooths it)
    assert torch.equal(traj[0], x)


@pytest.mark.parametrize("bad,match", [
    (torch.rand(2, 1, 8, 8) + 1, r"values in \[0,1\]"),
    (torch.full((2, 1, 8, 8), float("nan")), r"values in \[0,1\]"),
    (torch.rand(2, 8, 8), r"shape \(N, 1, 8, 8\)"),
    (torch.rand(2, 3, 8, 8), r"shape \(N, 1, 8, 8\)"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "floating-point"),
    ([[0.5]], "torch.Tensor"),
])
def test_bad_input_is_refused(unet, bad, match):
    f = Purifier(unet, scheduler(), "ddpm", T_STAR, image_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=match):
        f(bad)


def test_wrong_device_is_refused():
    with pytest.raises(ValueError, match="on meta"):
        check_images(torch.rand(1, 1, 8, 8), (1, 8, 8), torch.device("meta"))


def test_bad_settings_are_refused(unet, x):
    with pytest.raises(ValueError, match="purifier method"):
        Purifier(unet, scheduler(), "sde", T_STAR)
    with pytest.raises(ValueError, match="t_star"):
        Purifier(unet, scheduler(), "ddpm", 101)
    with pytest.raises(ValueError, match="variance_type"):
        Purifier(unet, scheduler(variance_type="fixed_small_log"), "ddpm", T_STAR)
    with pytest.raises(ValueError, match="equal chunks"):
        Purifier(unet, scheduler(), "ddpm", T_STAR)(x[:5], base_seeds=[0, 1])
