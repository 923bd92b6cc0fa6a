"""The imagenet world: the ADM UNet's official key set, and the real loaders on random models.

Where the official key list comes from: openai/guided-diffusion's own code
(``guided_diffusion.script_util.create_model``, commit of its main branch)
with the flags of ``256x256_diffusion_uncond.pt`` from its README
(``--attention_resolutions 32,16,8 --class_cond False --image_size 256
--learn_sigma True --num_channels 256 --num_head_channels 64 --num_res_blocks 2
--resblock_updown True --use_fp16 True --use_scale_shift_norm True``), built on
the meta device; DiffPure loads the official file into exactly that model with
a strict ``load_state_dict``, so these are the file's keys. The lines
"<key> <shape tuple>" of its ``state_dict()``, sorted and joined by newlines,
have the SHA-256 below (566 keys, 552,814,086 parameters, all float32 in the file).
"""

import dataclasses
import hashlib
import json
import shutil

import pytest
import torch

from diffrob import cli, worlds
from diffrob.purifiers import Purifier
from diffrob.worlds import adm, imagenet
from diffrob.worlds.checkpoints import MissingFileError

OFFICIAL_KEYS_SHA256 = "b9c90be1570d1541c91bede05b270bfb6bd51a7d5432e7b06f3a4c4cb257b1b6"
OFFICIAL_N_KEYS, OFFICIAL_N_PARAMS = 566, 552_814_086
OFFICIAL_SAMPLES = {  # a few lines of the official list, as read from it
    "time_embed.0.weight": (1024, 256),
    "input_blocks.0.0.weight": (256, 3, 3, 3),
    "input_blocks.1.0.emb_layers.1.weight": (512, 1024),
    "input_blocks.7.0.skip_connection.weight": (512, 256, 1, 1),
    "input_blocks.17.1.qkv.weight": (3072, 1024, 1),
    "input_blocks.17.1.proj_out.weight": (1024, 1024, 1),
    "middle_block.1.norm.weight": (1024,),
    "out.2.weight": (6, 256, 3, 3),
}
N_IMAGES = 3  # of the fake_imagenet fixture's (conftest.py)


def key_lines(model: torch.nn.Module) -> list[str]:
    return [f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items()]


def test_full_architecture_has_the_official_keys_and_shapes():
    with torch.device("meta"):
        model = adm.ADMUNet(adm.UNCOND_256)
    lines = key_lines(model)
    assert len(lines) == OFFICIAL_N_KEYS
    assert sum(v.numel() for v in model.state_dict().values()) == OFFICIAL_N_PARAMS
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: shapes.get(k) for k in OFFICIAL_SAMPLES} == OFFICIAL_SAMPLES
    assert hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest() == OFFICIAL_KEYS_SHA256


def sin_weighted_small_adm() -> adm.ADMUNet:
    """openai/guided-diffusion's UNetModel at image_size=32, model_channels=32,
    channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,) i.e. at 16 pixels,
    num_head_channels=32, out_channels=6, use_scale_shift_norm and resblock_updown True,
    float32, every state-dict entry i set to 0.2 sin(0.37 j + i) over its flat index j."""
    cfg = adm.ADMConfig(image_size=32, model_channels=32, channel_mult=(1, 2),
                        attention_resolutions=(16,), num_head_channels=32, num_res_blocks=1)
    model = adm.ADMUNet(cfg).eval()
    state = model.state_dict()
    for i, k in enumerate(state):
        j = torch.arange(state[k].numel(), dtype=torch.float32)
        state[k] = (torch.sin(j * 0.37 + i) * 0.2).reshape(state[k].shape)
    model.load_state_dict(state)
    return model


def test_outputs_match_the_official_implementation():
    """Known answer: the official UNetModel of :func:`sin_weighted_small_adm` gave these
    numbers for the input and timesteps below (run once with their code)."""
    model = sin_weighted_small_adm()
    x = torch.cos(torch.arange(2 * 3 * 32 * 32, dtype=torch.float32) * 0.01).reshape(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([5, 600]))
    assert out.sum().item() == pytest.approx(-773.4988403320312, rel=1e-4)
    assert out.abs().sum().item() == pytest.approx(1699.0001220703125, rel=1e-4)
    official = [-0.22812524437904358, -0.20010186731815338, -0.14627760648727417,
                -0.07313741743564606, 0.010297328233718872, 0.09353600442409515]
    assert out[1, :, 7, 9].tolist() == pytest.approx(official, abs=1e-5)


@pytest.mark.parametrize("t, official", [
    (150, [-78.05300903320312, 3525.24951171875,
           [-0.10245588421821594, 0.6803787350654602, -0.868395209312439]]),
    (2, [-80.29193115234375, 3513.189697265625,
         [-0.06272062659263611, 0.6919648051261902, -0.8879554271697998]]),
])
def test_reverse_step_matches_the_official_gaussian_diffusion(t, official):
    """Known answer: guided-diffusion's ``GaussianDiffusion`` (``create_gaussian_diffusion``
    with steps=1000, learn_sigma=True, noise_schedule="linear"), ``p_mean_variance(model, x,
    t - 1, clip_denoised=True)`` on :func:`sin_weighted_small_adm`, then mean +
    exp(log_variance / 2) z, float32, gave these numbers (run once with their code). At t = 2
    it checks that alpha_bar is accumulated in float64, as their numpy code does."""
    n = 2 * 3 * 32 * 32
    x = (torch.cos(torch.arange(n, dtype=torch.float32) * 0.01) * 0.9).reshape(2, 3, 32, 32)
    z = torch.sin(torch.arange(n, dtype=torch.float32) * 0.013).reshape(2, 3, 32, 32)
    purifier = Purifier(sin_weighted_small_adm(), imagenet.build_scheduler(), "ddpm", 150)
    with torch.no_grad():
        y = purifier._reverse_step(x, t, z)
    total, absolute, pixel = official
    assert y.sum().item() == pytest.approx(total, rel=1e-4)
    assert y.abs().sum().item() == pytest.approx(absolute, rel=1e-5)
    assert y[1, :, 7, 9].tolist() == pytest.approx(pixel, abs=1e-5)


def full_depth(cfg: adm.ADMConfig) -> adm.ADMConfig:
    """``cfg`` at the 256x256 model's number of residual blocks per level."""
    return dataclasses.replace(cfg, num_res_blocks=adm.UNCOND_256.num_res_blocks)


def test_small_config_keeps_the_structure(files):
    """The fake world's ADM is the real one at reduced width and depth: at full depth it
    has the real model's keys, in order."""
    small = adm.file_config(files["diffusion_model"])
    assert dataclasses.replace(small, model_channels=256, num_head_channels=64,
                               num_res_blocks=2) == adm.UNCOND_256
    with torch.device("meta"):
        full = adm.ADMUNet(adm.UNCOND_256)
        reduced = adm.ADMUNet(full_depth(small))
    assert list(full.state_dict()) == list(reduced.state_dict())


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="multiple of 32"):
        adm.ADMConfig(model_channels=48)


@pytest.fixture
def files(fake_imagenet):
    return fake_imagenet


def load(files, **kw):
    args = dict(model_dir=files["model_dir"], data_dir=files["data_dir"], n_images=N_IMAGES,
                batch_size=N_IMAGES, t_star=1, device="cpu",
                diffusion_model=files["diffusion_model"])
    return worlds.load("imagenet", **{**args, **kw})


def test_world_loads_images_labels_and_models(files):
    world = load(files)
    assert world.image_shape == (3, 224, 224) and world.model_size == 256
    for i, colour in enumerate(files["colours"][:N_IMAGES]):  # flat JPEGs: every pixel keeps its colour
        want = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
        assert (world.images[i] - want).abs().max() < 4 / 255
    wnids = sorted(json.loads(
        imagenet._robustbench_file("imagenet_class_to_id_map.json").read_text()))
    assert len(wnids) == 1000
    assert world.labels.tolist() == [wnids.index(n.split("/")[0]) for n in files["names"][:N_IMAGES]]
    assert world.class_names[0] == "tench"
    x = world.images
    mean = torch.tensor(imagenet.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.STD).view(1, 3, 1, 1)
    with torch.no_grad():  # [0,1] in, RobustBench's normalisation inside
        assert torch.allclose(world.classifier(x), files["resnet"]((x - mean) / std), atol=1e-4)
        h, k = torch.rand(1, 3, 256, 256) * 2 - 1, torch.tensor([149])
        out = world.diffusion(h, k)
        assert out.shape == (1, 6, 256, 256)  # eps and the learned-variance v
        assert torch.allclose(out, files["unet"](h, k), atol=1e-5)
    cfg = world.scheduler.config
    assert (cfg.variance_type, cfg.num_train_timesteps, cfg.clip_sample) == ("learned_range",
                                                                               1000, True)


def test_one_purification_step_at_256(files):
    world = load(files)
    purifier = world.purifier()
    x = world.images[:1]
    states = purifier.trajectory(x, base_seeds=0, batch_index=0)
    assert states.shape == (3, 1, 3, 224, 224)  # input, after 1 forward, after 1 reverse step
    y = purifier(x, base_seeds=0, batch_index=0)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, states[-1])
    assert world.predict(y).shape == (1,)


def test_differentiable_checkpointed_mode(files):
    world = load(files, n_images=1)
    x = world.images.clone().requires_grad_(True)
    y = world.purifier()(x, base_seeds=0, batch_index=0, grad=True)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and x.grad.abs().sum() > 0


def test_forward_and_reverse_mode_products_agree_at_256(files):
    """Sec. 6's matrix-free spectrum needs J v (forward mode, through the ADM and the 224 <-> 256
    resizes) and u^T J (reverse mode): they must be adjoint, u . (J v) = (u^T J) . v."""
    from diffrob.compression import analysis as compression

    world = load(files, n_images=1)
    f = compression.fixed_purifier(world.purifier(), 0, 0)
    g = torch.Generator().manual_seed(0)
    v, u = torch.randn(2, 150528, generator=g), torch.randn(2, 150528, generator=g)
    jv, ujt = compression.jvp_rows(f, world.images, v), compression.vjp_rows(f, world.images, u)
    assert jv.abs().sum() > 0
    torch.testing.assert_close((u * jv).sum(1), (ujt * v).sum(1), rtol=1e-4, atol=1e-3)


# fp16 is how DiffPure ran this model, on a GPU; on a CPU without fp16 kernels it takes 80 s
@pytest.mark.parametrize("dtype", ["bf16", pytest.param("fp16", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fp16 autocast on a CPU (80 s here; the same code "
    "path as bf16, which runs): runs where CUDA is"))])
def test_autocast_is_close(files, dtype):
    world = load(files, n_images=1)
    x = world.images
    y32 = world.purifier()(x, base_seeds=0, batch_index=0)
    world16 = load(files, n_images=1, autocast=dtype)
    y16 = world16.purifier()(x, base_seeds=0, batch_index=0)
    assert not torch.equal(y16, y32)  # autocast is on
    assert (y16 - y32).abs().mean() < 0.02


def test_learned_variance_is_used(files):
    """The reverse noise scale follows v: v = +1 gives sigma^2 = beta_t, v = -1 the posterior."""
    world = load(files)
    purifier = world.purifier(t_star=150)
    sched = world.scheduler
    t = 150
    beta, ab, ab_prev = (sched.betas[t - 1].item(), sched.alphas_cumprod[t - 1].item(),
                         sched.alphas_cumprod[t - 2].item())
    one = torch.ones(1)
    assert purifier._sigma(t, one).item() == pytest.approx(beta ** 0.5, rel=1e-5)
    assert purifier._sigma(t, -one).item() == pytest.approx(
        (beta * (1 - ab_prev) / (1 - ab)) ** 0.5, rel=1e-5)


def test_safetensors_conversion_loads_the_same_model(files, tmp_path):
    torch.save(files["unet"].state_dict(), tmp_path / "small.pt")
    cfg = adm.file_config(files["diffusion_model"])
    assert cfg != adm.UNCOND_256 and cfg.model_channels == 32
    out = adm.convert_to_safetensors(tmp_path / "small.pt", cfg=cfg)
    assert out == tmp_path / "small.safetensors" and adm.file_config(out) == cfg
    world = load(files, diffusion_model=str(out))
    h, k = torch.rand(1, 3, 256, 256) * 2 - 1, torch.tensor([3])
    with torch.no_grad():
        assert torch.allclose(world.diffusion(h, k), files["unet"](h, k), atol=1e-5)


def test_a_pt_file_or_safetensors_without_metadata_is_the_official_architecture(files, tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, tmp_path / "plain.safetensors")
    assert adm.file_config(tmp_path / "plain.safetensors") == adm.UNCOND_256
    torch.save(files["unet"].state_dict(), tmp_path / "small.pt")  # same keys, smaller shapes
    with pytest.raises(ValueError, match=r"small\.pt.*wrong shapes \['input_blocks"):
        adm.load_adm(tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"small\.pt.*wrong shapes"):  # nothing written
        cli.main(["convert-adm", str(tmp_path / "small.pt")])
    assert not (tmp_path / "small.safetensors").exists()


def test_wrong_state_dict_is_named(files, tmp_path):
    unet = adm.ADMUNet(full_depth(adm.file_config(files["diffusion_model"])))
    bad = {k: v for k, v in unet.state_dict().items() if not k.startswith("out.")}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt.*missing keys \['out\.0\.bias'"):
        adm.load_adm(tmp_path / "bad.pt")


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """No torch hub cache: the classifier can only come from model_dir."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))


@pytest.mark.timeout(120)
def test_missing_diffusion_file(files, tmp_path, empty_hub):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / imagenet.RESNET_FILE).symlink_to(
        files["root"] / "models" / "imagenet" / imagenet.RESNET_FILE)
    with pytest.raises(MissingFileError) as e:
        load(files, model_dir=str(tmp_path), diffusion_model="")
    message = str(e.value)
    assert repr(imagenet.DIFFUSION_FILE) in message and str(tmp_path / "imagenet") in message
    assert "openaipublic.blob.core.windows.net" in message and "docs/worlds.md" in message


@pytest.mark.timeout(120)
def test_missing_classifier_file(files, tmp_path, empty_hub):
    with pytest.raises(MissingFileError) as e:
        load(files, model_dir=str(tmp_path))
    message = str(e.value)
    assert repr(imagenet.RESNET_FILE) in message and str(tmp_path / "imagenet") in message
    assert str(tmp_path / "torch-hub" / "checkpoints") in message
    assert "download.pytorch.org" in message


@pytest.mark.timeout(120)
def test_missing_validation_image(files):
    with pytest.raises(MissingFileError) as e:
        load(files, n_images=len(files["names"]) + 1)
    name = imagenet._robustbench_file("imagenet_test_image_ids.txt").read_text().split()[
        len(files["names"])]
    assert repr(name.split("/")[1]) in str(e.value) and "image-net.org" in str(e.value)


FULL_SIZE_DISK_GB = 5  # the official .pt and its safetensors conversion, 2.2 GB each, at once


@pytest.fixture
def big_tmp(tmp_path):
    """A folder with room for two full-size ADM files, emptied afterwards so that pytest's
    kept temporary folders of earlier runs do not fill the disk."""
    free_gb = shutil.disk_usage(tmp_path).free / 1e9
    if free_gb < FULL_SIZE_DISK_GB:
        pytest.skip(f"needs {FULL_SIZE_DISK_GB} GB free under {tmp_path}, has {free_gb:.1f} GB")
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_full_size_model_in_official_format_purifies(big_tmp, files):
    """The full 552 M-parameter model saved as the official file, loaded by the real loader,
    one purification step on a 224 image (256 inside), then the one-time conversion to
    safetensors purifies the same. ~2.2 GB in memory, 4.4 GB on disk at the peak."""
    (big_tmp / "imagenet").mkdir()
    (big_tmp / "imagenet" / imagenet.RESNET_FILE).symlink_to(
        files["root"] / "models" / "imagenet" / imagenet.RESNET_FILE)
    torch.manual_seed(1)
    full = adm.ADMUNet(adm.UNCOND_256).eval()
    torch.save(full.state_dict(), big_tmp / "imagenet" / imagenet.DIFFUSION_FILE)
    del full
    world = load(files, model_dir=str(big_tmp), diffusion_model="", n_images=1, batch_size=1)
    assert sum(p.numel() for p in world.diffusion.parameters()) == OFFICIAL_N_PARAMS
    y = world.purifier()(world.images, base_seeds=0, batch_index=0)
    assert y.shape == (1, 3, 224, 224) and y.min() >= 0 and y.max() <= 1
    del world
    official = big_tmp / "imagenet" / imagenet.DIFFUSION_FILE
    cli.main(["convert-adm", str(official), "--out", str(big_tmp / "uncond.safetensors")])
    official.unlink()
    assert adm.file_config(big_tmp / "uncond.safetensors") == adm.UNCOND_256
    world = load(files, model_dir=str(big_tmp), diffusion_model=str(big_tmp / "uncond.safetensors"),
                 n_images=1, batch_size=1)
    assert torch.allclose(world.purifier()(world.images, base_seeds=0, batch_index=0), y, atol=1e-5)


def test_params_file_has_the_papers_settings():
    from pathlib import Path

    from diffrob import params

    p = params.load(Path(__file__).parents[1] / "params" / "imagenet.yaml")
    assert (p.world, p.n_images, p.batch_size, p.t_star, p.eps_255) == ("imagenet", 200, 10,
                                                                        150, 4.0)
    assert p.attacks == ["bpda", "bpda-eot"] and (p.attack_steps, p.eot) == (40, 15)
    assert p.eot_per_call == 1  # 10 rows of 256x256 per call: the full gradient fits a GPU
    assert p.rel_stepsize == pytest.approx(0.01 / 0.3)
