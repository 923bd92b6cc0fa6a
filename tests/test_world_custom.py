"""The custom world (``world: custom``, docs/custom.md): the mnist world's own models and data
exported as a diffusers folder, a TorchScript classifier and an .npz give the mnist world's
results exactly (Table 1, a sec. 5 and a sec. 6 table), its plan counts the same costs, its
keys leave the other worlds' parameter digests as they were, and chapter 05 runs on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from diffrob import params, plan, store, worlds
from diffrob.cap import report as cap_report
from diffrob.compression import report as compression_report
from diffrob.fuzzy import runs as fuzzy_runs
from diffrob.setup import report as setup_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from export_custom_example import export  # noqa: E402

# params/mnist.yaml at the smallest sizes that run Table 1, the slices and the rates (one PGD
# step of the whole radius, so that the attacks change predictions).
SMALL = dict(n_images=4, batch_size=2, t_star=2, attacks=["pgd", "bpda"], attack_steps=1,
             rel_stepsize=1.0, eot=2, n_evals=2, vote_k=[2], cap_images=2, cap_points=20,
             cap_radius=12.0, pca_samples=8, pca_components=3, jacobian_images=1,
             rate_samples=2, device="cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, str]:
    """scripts/export_custom_example.py's three files of the mnist world."""
    out = tmp_path_factory.mktemp("custom_example")
    return {key: str(path) for key, path in export(out, ROOT / "models").items()}


@pytest.fixture(scope="module")
def both(exported, tmp_path_factory) -> tuple:
    """The mnist world and the custom world of its export, on the same small parameters."""
    results = str(tmp_path_factory.mktemp("results"))
    mnist = worlds.from_params(params.load(ROOT / "params/mnist.yaml", **SMALL,
                                           results_dir=results))
    custom = worlds.from_params(params.load(ROOT / "params/custom.example.yaml", **SMALL,
                                            **exported, results_dir=results))
    return mnist, custom


def test_the_export_holds_the_mnist_worlds_data_and_models(both) -> None:
    mnist, custom = both
    assert custom.name == "custom" and custom.model_size is None
    assert torch.equal(custom.images, mnist.images) and torch.equal(custom.labels, mnist.labels)
    assert store.fingerprint(custom.diffusion) == store.fingerprint(mnist.diffusion)
    x = mnist.images.clone().requires_grad_(True)
    grads = [torch.autograd.grad(w.classifier(x)[:, 3].sum(), x)[0] for w in both]
    assert torch.equal(custom.classifier(mnist.images), mnist.classifier(mnist.images))
    assert torch.equal(*grads)


def test_table_1_and_a_sec5_and_a_sec6_table_are_the_mnist_worlds(both) -> None:
    tables = [(fuzzy_runs.table_1(w, progress=False),
               cap_report.radius_table(cap_report.slices(w)).frame,
               compression_report.rate_table(compression_report.rates(w),
                                             compression_report.neighbourhood(w)).frame)
              for w in both]
    for ours, theirs in zip(*tables):
        pd.testing.assert_frame_equal(ours, theirs)


def test_chapter_1_names_the_users_models_as_the_mnist_world_does(both) -> None:
    """The world table shows the exported classifier's class (MnistCNN), not the wrapper's."""
    mnist, custom = both
    rows = ["classifier", "diffusion model"]
    tables = [setup_report.world_table(w).frame.loc[rows, "ours"] for w in both]
    assert tables[1].tolist() == tables[0].tolist()
    assert tables[1]["classifier"].startswith("MnistCNN, ")


def test_plan_counts_the_mnist_worlds_costs(exported) -> None:
    p = params.load(ROOT / "params/custom.example.yaml", **exported)
    assert plan.unit_costs(worlds.architecture("custom", p)) == plan.unit_costs(
        worlds.architecture("mnist"))
    with pytest.raises(ValueError, match="give its parameters"):
        worlds.architecture("custom")


# store.params_digest of each parameter file (pinned when its values last changed, 2026-12-05:
# chapter 4b's AutoAttack budget and longer grids; digits 2026-12-07: its step grid up to the
# corner step 2 eps; digits and mnist 2026-12-07: autocast auto, digits 320 Jacobian
# images, chapter 4b on Table 1's 96 images with r = 100 and EOT up to 64; the custom world's
# keys must not change them).
DIGESTS = {
    None: "87cbbe4c54d7df5d60577be4f2503fc003750e4fc908f41d338fbf777338520f",
    "params/smoke.yaml": "68b743341a14bc6419ae8c80ae3d1fb4207262242fd94ab236efe86a2bc0410e",
    "params/digits.yaml": "5472809e4f4c814c9e9cf6df5a655783f80288966a1e6280cbfe975f2370fd37",
    "params/mnist.yaml": "cfa717f883decfceaee90d6f2f64cc40b81a35077f74b4c68661987ed02bc88e",
    "params/cifar10.yaml": "7b7fea29963670098e07132fcb9be69bc866aafd27b523b0f5430ba46ee1e27e",
    "params/imagenet.yaml": "db62eb352d213a28ac2b9a0782a3349639dbe3774a77a86cee650b1b273c7177",
}


@pytest.mark.parametrize("path", list(DIGESTS))
def test_the_custom_keys_leave_the_other_worlds_digests_unchanged(path) -> None:
    p = params.load(ROOT / path if path else None)
    assert store.params_digest(p) == DIGESTS[path], (
        f"{path or 'the defaults'}: digest changed; if its values changed on purpose, pin the "
        "new digest here (the results stored under the old one are then stale)")
    assert not set(params.CUSTOM_KEYS) & set(p.as_dict())


def test_custom_keys_enter_the_digest_when_set_and_only_with_world_custom() -> None:
    p = params.load(None, world="custom", data="a.npz")
    assert p.as_dict()["data"] == "a.npz" and "classifier" not in p.as_dict()
    assert params.Params(**p.as_dict()) == p
    assert store.params_digest(p) != store.params_digest(p.replace(data="b.npz"))
    with pytest.raises(ValueError, match=r"\['classifier'\]: read by world 'custom' only"):
        params.load(ROOT / "params/mnist.yaml", classifier="model.pt")


@pytest.mark.timeout(1800)
def test_chapter_05_runs_on_the_custom_world(exported, tmp_path) -> None:
    from book.execute import execute  # scripts/book/
    import nbformat

    smoke = {**SMALL, "attacks": ["pgd-eot", "bpda"], "attack_steps": 1}
    out = execute(ROOT / "book/05_cap.py", tmp_path / "05_cap.ipynb",
                  "params/custom.example.yaml",
                  {**smoke, **exported, "results_dir": str(tmp_path / "results")},
                  progress=False)
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
               for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("custom: d = 784" in o.get("text", "") for o in outputs)
