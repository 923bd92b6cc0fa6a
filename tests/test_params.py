"""Parameters: defaults, YAML files, overrides, and clear errors for bad input."""

from pathlib import Path

import pytest

from diffrob import params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["smoke", "digits", "cifar10", "imagenet"])
def test_shipped_files_validate(name):
    p = params.load(ROOT / "params" / f"{name}.yaml")
    assert p.world in params.WORLDS


def test_paper_settings_of_table_s1():
    p = params.load(ROOT / "params" / "cifar10.yaml")
    assert (p.n_images, p.batch_size, p.t_star, p.attack_steps, p.eot) == (1000, 50, 100, 40, 15)
    assert p.eps == pytest.approx(8 / 255)
    assert p.step_size == pytest.approx(8 / 255 * 0.01 / 0.3)  # one number: eps x 0.01/0.3
    q = params.load(ROOT / "params" / "imagenet.yaml")
    assert (q.n_images, q.batch_size, q.t_star, q.eps_255) == (200, 10, 150, 4)


def test_overrides_win_and_ints_become_floats(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("world: digits\neps_255: 16\n")
    p = params.load(f, eps_255=32, eot=3)
    assert p.eps_255 == 32.0 and isinstance(p.eps_255, float) and p.eot == 3
    assert p.replace(eot=5).eot == 5


@pytest.mark.parametrize("overrides,match", [
    ({"n_imagez": 3}, r"unknown parameter\(s\) \['n_imagez'\]"),
    ({"n_images": 0}, r"'n_images': expected int, >= 1, got 0"),
    ({"n_images": "3"}, r"'n_images': expected int"),
    ({"n_images": 2.5}, r"'n_images': expected int"),
    ({"eps_255": 300}, r"'eps_255': expected float, >= 0.0, <= 255.0"),
    ({"checkpointing": 1}, r"'checkpointing': expected bool"),
    ({"purifier": "sde"}, r"'purifier': expected str in \['ddpm'"),
    ({"attacks": ["pgd", "cw"]}, r"'attacks'.*each of"),
    ({"vote_k": 10}, r"'vote_k': expected list\[int\]"),
    ({"vote_k": [0]}, r"'vote_k'"),
])
def test_bad_values_name_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        params.load(None, **overrides)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("world: digits\nepsilon: 8\n")
    with pytest.raises(ValueError, match=r"\['epsilon'\] in .*bad.yaml"):
        params.load(f)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        params.load(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        params.load(f)


def test_notebook_overrides_come_from_injected_variables(monkeypatch):
    monkeypatch.chdir(ROOT / "book")  # as when a chapter is opened from book/
    ns = {"params_file": "params/smoke.yaml", "eot": 7, "params": params, "In": [],
          "_i1": "x", "print": print}
    p = params.load_notebook("params/smoke.yaml", ns)
    assert p.eot == 7 and Path.cwd() == ROOT
    with pytest.raises(ValueError, match="'n_image'"):
        params.load_notebook("params/smoke.yaml", {**ns, "n_image": 3})
