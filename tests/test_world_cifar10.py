"""The cifar10 world through its real loaders, with random models of the real architectures.

No network: the models are randomly initialised and saved in the real formats
and folder layouts (diffusers ``save_pretrained``; RobustBench's
``model_dir/cifar10/Linf/Standard.pt``; CIFAR-10's python pickle), then read
back by :mod:`diffrob.worlds.cifar10`.
"""

import shutil

import pytest
import torch

from conftest import CIFAR10_LABELS, make_fake_cifar10
from diffrob import worlds
from diffrob.worlds import cifar10
from diffrob.worlds.checkpoints import MissingFileError, import_robustbench

# google/ddpm-cifar10-32's config.json as published on the hub is cifar10.UNET_CONFIG
# (transcribed e.g. from the "unet_config" of a public DDPM config file found with the
# search tools); its scheduler_config.json is conftest.CIFAR10_SCHEDULER.
N_FAKE = len(CIFAR10_LABELS)  # images in the fake test batch
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """model_dir, data_dir, a hub-layout diffusers folder with the full-size DDPM, and the
    random models saved there (conftest.make_fake_cifar10)."""
    return make_fake_cifar10(tmp_path_factory.mktemp("cifar10"), cifar10.UNET_CONFIG)


def load(files, **kw):
    args = dict(model_dir=files["model_dir"], data_dir=files["data_dir"],
                diffusion_model=str(files["folder"]), n_images=4, batch_size=2, t_star=1,
                device="cpu")
    return worlds.load("cifar10", **{**args, **kw})


def test_world_loads_the_saved_models_and_the_first_images(files):
    world = load(files)
    assert world.name == "cifar10" and world.image_shape == (3, 32, 32)
    data = files["data"]
    # pixel (channel 1, row 2, column 3) of image 0 sits at 1024 + 2 * 32 + 3 in the row
    assert world.images[0, 1, 2, 3].item() == pytest.approx(data[0, 1024 + 67] / 255)
    assert world.labels.tolist() == files["labels"][:4]
    assert world.class_names[3] == "cat"
    x = world.images
    with torch.no_grad():
        assert torch.allclose(world.classifier(x), files["wrn"](x), atol=1e-5)
        k = torch.tensor([10, 500, 999, 0])
        assert torch.allclose(world.diffusion(2 * x - 1, k).sample,
                              files["unet"](2 * x - 1, k).sample, atol=1e-5)
    assert world.scheduler.config.variance_type == "fixed_large"
    assert world.scheduler.config.num_train_timesteps == 1000
    assert not any(p.requires_grad for p in world.classifier.parameters())


def test_one_purification_step_and_one_classification(files):
    world = load(files)
    purifier = world.purifier()
    assert purifier.t_star == 1
    x = world.images[:2]
    y = purifier(x, base_seeds=0, batch_index=0)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.equal(y, x)
    assert torch.equal(y, purifier(x, base_seeds=0, batch_index=0))  # eq. 9 seeds
    assert world.predict(y).shape == (2,)


def test_hub_id_resolves_from_the_local_cache(files, tmp_path, monkeypatch):
    """'' means google/ddpm-cifar10-32, found in the Hugging Face cache without network."""
    import huggingface_hub.constants as hf

    repo = tmp_path / "hub" / "models--google--ddpm-cifar10-32"
    shutil.copytree(files["folder"], repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    unet_dir, sched_dir = cifar10.diffusion_folders("")
    assert unet_dir == sched_dir == repo / "snapshots" / SNAPSHOT
    assert load(files, diffusion_model="").diffusion.config.sample_size == 32


def test_saved_pipeline_layout(files, tmp_path):
    """A DDPMPipeline.save_pretrained folder: unet/ and scheduler/ beside model_index.json."""
    for sub, names in (("unet", ["config.json", "diffusion_pytorch_model.safetensors"]),
                       ("scheduler", ["scheduler_config.json"])):
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).symlink_to(files["folder"] / name)
    assert cifar10.diffusion_folders(str(tmp_path)) == (tmp_path / "unet",
                                                        tmp_path / "scheduler")
    unet, scheduler = cifar10.load_diffusion(str(tmp_path))
    assert scheduler.config.variance_type == "fixed_large"
    x, k = torch.rand(1, 3, 32, 32), torch.tensor([7])
    with torch.no_grad():
        assert torch.allclose(unet(x, k).sample, files["unet"](x, k).sample, atol=1e-5)


@pytest.fixture
def no_download(monkeypatch):
    """Offline: any attempt of RobustBench to reach Google Drive fails the test (and the
    timeout marks of the tests below catch retries or network waits)."""
    import_robustbench()
    import robustbench.utils

    def forbidden(*args, **kwargs):
        raise AssertionError("robustbench tried to download")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", forbidden)
    monkeypatch.setattr(robustbench.utils, "download_gdrive", forbidden)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def expect_missing(files, name, folder, **kw):
    with pytest.raises(MissingFileError) as e:
        load(files, **kw)
    message = str(e.value)
    assert repr(name) in message and str(folder.resolve()) in message
    assert "docs/worlds.md" in message
    return message


@pytest.mark.timeout(120)
def test_missing_classifier(files, tmp_path, no_download):
    message = expect_missing(files, "Standard.pt", tmp_path / "cifar10" / "Linf",
                             model_dir=str(tmp_path))
    assert "RobustBench" in message and "1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC" in message
    assert not (tmp_path / "cifar10" / "Linf" / "Standard.pt").exists()


@pytest.mark.timeout(120)
def test_missing_test_set(files, tmp_path, no_download):
    message = expect_missing(files, "test_batch", tmp_path / "cifar-10-batches-py",
                             data_dir=str(tmp_path))
    assert "cifar-10-python.tar.gz" in message


@pytest.mark.parametrize("absent", ["config.json", "diffusion_pytorch_model.safetensors",
                                    "scheduler_config.json"])
@pytest.mark.timeout(120)
def test_missing_diffusion_file(files, tmp_path, no_download, absent):
    for f in files["folder"].iterdir():
        if f.name != absent:
            (tmp_path / f.name).symlink_to(f)
    message = expect_missing(files, absent, tmp_path, diffusion_model=str(tmp_path))
    assert "huggingface.co/google/ddpm-cifar10-32" in message


@pytest.mark.timeout(120)
def test_hub_id_not_in_cache(files, tmp_path, no_download, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    message = expect_missing(files, "google/ddpm-cifar10-32", tmp_path, diffusion_model="")
    assert "hf download google/ddpm-cifar10-32" in message


@pytest.mark.timeout(120)
def test_all_missing_files_are_named_at_once(files, tmp_path, no_download):
    (tmp_path / "ddpm").mkdir()
    with pytest.raises(MissingFileError) as e:
        load(files, model_dir=str(tmp_path), data_dir=str(tmp_path),
             diffusion_model=str(tmp_path / "ddpm"))
    lines = str(e.value).splitlines()
    assert len(lines) == 3
    assert [name in line for line, name in zip(lines, ["'test_batch'", "'Standard.pt'",
                                                       "'config.json'"])] == [True] * 3


def test_html_instead_of_checkpoint_is_explained(files, tmp_path, no_download):
    """A failed Google Drive download leaves an HTML page named Standard.pt (RobustBench #158)."""
    (tmp_path / "cifar10" / "Linf").mkdir(parents=True)
    (tmp_path / "cifar10" / "Linf" / "Standard.pt").write_text("<!DOCTYPE html><html></html>")
    with pytest.raises(ValueError, match="HTML page"):
        load(files, model_dir=str(tmp_path))


def test_too_many_images(files):
    with pytest.raises(ValueError, match="n_images"):
        load(files, n_images=N_FAKE + 1)


def test_params_file_has_the_papers_settings():
    from pathlib import Path

    from diffrob import params

    p = params.load(Path(__file__).parents[1] / "params" / "cifar10.yaml")
    assert (p.world, p.n_images, p.batch_size, p.t_star, p.eps_255) == ("cifar10", 1000, 50,
                                                                        100, 8.0)
    assert (p.attack_steps, p.eot, p.n_evals, p.vote_k) == (40, 15, 100, [10, 100])
    assert p.rel_stepsize == pytest.approx(0.01 / 0.3)
    assert set(p.attacks) == {"bpda", "bpda-eot", "pgd", "pgd-eot"}
    assert (p.cap_images, p.cap_points, p.cap_radius) == (1000, 1000, 3.0)
    assert (p.pca_samples, p.jacobian_images) == (10000, 50)
