"""`diffrob plan`: the counted costs match what the stages really spend."""

import dataclasses

import pytest
import torch
from torch import nn

from diffrob import attacks, cli, params, plan, stages, worlds
from diffrob.compression import runs as compression
from diffrob.worlds import imagenet

from conftest import tiny_world


@pytest.fixture(scope="module")
def digits_units():
    return plan.unit_costs(worlds.architecture("digits"))


class ImageCount:
    """Counts the images through the diffusion model's forward (checkpoint recomputations
    included)."""

    def __init__(self, model: nn.Module):
        self.n = 0
        model.register_forward_hook(lambda m, args, out: setattr(self, "n", self.n + len(args[0])))


@pytest.mark.parametrize("checkpointing,iterate,restarts", [
    (True, "last", 1), (False, "last", 1), (True, "best", 1), (False, "last", 2),
    (True, "best", 2)])
def test_flops_and_calls_match_a_real_attack_and_evaluation(digits_units, checkpointing, iterate,
                                                            restarts):
    """Every registered attack, restarts and the checked attack's evaluations included."""
    w = tiny_world(4, eot=3, attack_steps=2, batch_size=4, n_evals=3, checkpointing=checkpointing,
                   pgd_iterate=iterate, attack_restarts=restarts, attack_checks=2)
    w = dataclasses.replace(w, params=w.params.replace(attacks=list(attacks.NAMES)))
    costs = plan.table(w.params, units=digits_units)
    calls = ImageCount(w.diffusion)
    for name in attacks.NAMES:
        if name == "square":  # its budget: an image stops once fooled (below)
            continue
        calls.n = 0
        with plan.FlopCount() as spent:
            attacks.attack_batch(w, name, w.images, w.labels, 0)
        assert calls.n == costs.loc[f"attack/{name}", "diffusion evaluations"], name
        # the plan counts the timestep embedding per image, the purifier once per call
        assert spent.total == pytest.approx(costs.loc[f"attack/{name}", "PFLOP"] * 1e15,
                                            rel=0.01), name
    calls.n = 0
    with plan.FlopCount() as spent:
        stages.predict_purified(w, w.images, 0, [0, 1, 2])
    assert calls.n == costs.loc["evaluate/clean", "diffusion evaluations"]
    assert spent.total == pytest.approx(costs.loc["evaluate/clean", "PFLOP"] * 1e15, rel=0.01)


def test_square_spends_at_most_its_budget(digits_units):
    """Square's plan is its budget, a start and ``square_queries`` scores per image: an upper
    bound of what it spends, as an image stops once one noisy pass misclassifies it."""
    w = tiny_world(4, batch_size=4, square_queries=6)
    w = dataclasses.replace(w, params=w.params.replace(attacks=["square"]))
    costs = plan.table(w.params, units=digits_units).loc["attack/square"]
    start = costs["diffusion evaluations"] // (6 + 1)  # the start's evaluations, all images
    calls = ImageCount(w.diffusion)
    attacks.attack_batch(w, "square", w.images, w.labels, 0)
    assert start <= calls.n <= costs["diffusion evaluations"]


@pytest.mark.parametrize("checkpointing", [True, False])
def test_flops_and_calls_match_the_jacobian_stages(digits_units, tmp_path, checkpointing):
    """Sec. 6: the exact Jacobian (64 VJPs and two purifications per image) and the top singular
    values (JVPs and VJPs, on the first of them), run for real on two digits images and
    counted."""
    w = tiny_world(4, t_star=2, jacobian_images=2, singular_images=1, jacobian_chunk=24,
                   singular_top_k=3, singular_oversample=2, subspace_iterations=1,
                   checkpointing=checkpointing, results_dir=str(tmp_path))
    costs = plan.table(w.params, units=digits_units)
    calls = ImageCount(w.diffusion)
    for stage, run in (("jacobian", compression.jacobian_spectra),
                       ("top_singular", compression.top_singular_spectra)):
        calls.n = 0
        with plan.FlopCount() as spent:
            run(w, progress=False)
        row = costs.loc[f"compression/{stage}"]
        assert calls.n == row["diffusion evaluations"], stage
        assert spent.total == pytest.approx(row["PFLOP"] * 1e15, rel=0.01), stage


def test_the_exact_jacobian_is_planned_only_where_the_book_makes_it():
    stages_of = {name: set(plan.table(params.load(f"params/{name}.yaml")).index)
                 for name in ("cifar10", "imagenet")}
    assert {"compression/jacobian", "compression/top_singular"} <= stages_of["cifar10"]
    assert "compression/jacobian" not in stages_of["imagenet"]
    assert "compression/top_singular" in stages_of["imagenet"]


def test_saved_bytes_per_image_of_a_known_graph():
    """Autograd's conv node keeps its input (1 x 8 x 8 floats) and weight (no image's), ReLU
    its output (4 x 8 x 8 floats): (64 + 256) x 4 = 1280 bytes per image."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()).requires_grad_(False)
    assert plan.per_image(lambda x: plan.saved_bytes(net, x), (1, 8, 8), "cpu") == 1280


def test_resnet50_flops_are_torchvisions():
    from torchvision.models import ResNet50_Weights

    with torch.device("meta"):
        model = imagenet.build_classifier().requires_grad_(False)
    counted = plan.per_image(lambda x: plan.flops(model, x), (3, 224, 224), "meta")
    macs = ResNet50_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9  # torchvision's GFLOPS are MACs
    assert counted == pytest.approx(2 * macs, rel=0.005)


def test_eot_batch_sets_the_rows_and_memory_of_a_call(digits_units):
    w = tiny_world(4, eot=6, batch_size=4)
    p = w.params.replace(attacks=["pgd-eot"])
    one, three = (plan.table(p.replace(eot_batch=b), units=digits_units).loc["attack/pgd-eot"]
                  for b in (1, 3))
    assert (one["rows per call"], three["rows per call"]) == (4, 12)
    assert three["GB per call"] == pytest.approx(3 * one["GB per call"])
    assert one["PFLOP"] == three["PFLOP"]  # the work does not change
    tight = plan.table(p.replace(eot_batch=3), gpu_gb=0.0, units=digits_units)
    assert tight.loc["attack/pgd-eot", "fits"] == "no"


def test_cli_prints_the_plan_of_the_imagenet_params_file(capsys):
    cli.main(["plan", "--params", "params/imagenet.yaml", "-p", "attacks", "[bpda-eot, pgd-eot]",
              "--tflops", "50"])
    out = capsys.readouterr().out
    assert "attack/bpda-eot" in out and "attack/pgd-eot" in out and "evaluate/clean" in out
    assert "GPU hours at 50 TFLOP/s" in out
