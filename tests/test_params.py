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


@pytest.mark.parametrize("overrides,match", [
    ({"eps_255": float("nan")}, r"'eps_255': expected float.*finite"),
    ({"cap_radius": float("inf")}, r"'cap_radius'.*finite"),
    ({"rel_stepsize": float("nan")}, r"'rel_stepsize'"),
    ({"uniform_eps_255": [-8]}, r"'uniform_eps_255'.*>= 0.0"),
    ({"uniform_eps_255": [1000]}, r"'uniform_eps_255'.*<= 255.0"),
    ({"uniform_eps_255": [8, float("nan")]}, r"'uniform_eps_255'"),
    ({"device": "gpu"}, r"'device'.*'cuda:K'"),
    ({"device": "cuda:x"}, r"'device'"),
])
def test_non_finite_list_items_and_devices_are_range_checked(overrides, match):
    with pytest.raises(ValueError, match=match):
        params.load(None, **overrides)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices(device):
    assert params.load(None, device=device).device == device


@pytest.mark.parametrize("text,match", [
    ("", r"no parameters"),
    ("# only a comment\n\n", r"no parameters"),
    ("world: digits\neps_255: .nan\n", r"'eps_255'.*finite.*in .*p.yaml"),
    ("world: digits\ncap_radius: .inf\n", r"'cap_radius'.*in .*p.yaml"),
    ("world: digits\neot: 3\neot: 5\n", r"p.yaml, line 3: .*'eot' given twice \(lines 2 and 3\)"),
    ("world: digits\nvote_k: [1, 2\neot: 3\n", r"p.yaml, line \d: not valid YAML"),
    ("world: digits\ndevice: gpu\n", r"'device'.*\(in .*p.yaml\)"),
])
def test_file_mistakes_name_the_key_the_file_and_the_line(tmp_path, text, match):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        params.load(f)


@pytest.mark.parametrize("text, value", [("5", 5), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True),
                                         ("[2, 4]", [2, 4]), ("pgd", "pgd"), ("-8", -8)])
def test_override_values_are_typed_as_papermill_would(text, value):
    assert params.parse_override("k", text) == value
    assert type(params.parse_override("k", text)) is type(value)


def test_override_syntax_errors_name_the_key():
    with pytest.raises(ValueError, match=r"-p vote_k, line 1: not valid YAML"):
        params.parse_override("vote_k", "[1, 2")


def test_diffrob_and_the_book_build_parse_p_alike(monkeypatch):
    """One parser: ``-p rel_stepsize 1e-3`` works in the command line as in the book build."""
    import importlib.util
    import sys

    from diffrob import cli

    args = cli.parser().parse_args(["plan", "--params", str(ROOT / "params" / "smoke.yaml"),
                                    "-p", "rel_stepsize", "1e-3", "-p", "eps_255", "8"])
    p = cli._params(args)
    assert p.rel_stepsize == 1e-3 and p.eps_255 == 8.0
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "build_book", build_book)
    spec.loader.exec_module(build_book)
    seen = {}
    monkeypatch.setattr(build_book, "execute", lambda ch, out, pf, ov, **k: seen.update(ov))
    first = build_book.chapters()[:1]
    monkeypatch.setattr(build_book, "chapters", lambda *a: first)
    build_book.main(["--no-html", "-p", "rel_stepsize", "1e-3", "-p", "eps_255", "8"])
    assert seen == {"rel_stepsize": 1e-3, "eps_255": 8}


def test_attack_parameters_added_later_keep_the_recorded_digests():
    """attack_restarts, attack_checks and the strength chapter's new keys are left out of the
    parameter digest at their defaults (results recorded before them keep their digest) and
    enter it once changed; restarts and checks below 1 are refused by name."""
    from diffrob import store

    p = params.Params()
    new = ("attack_restarts", "attack_checks", "strength_restarts", "strength_more_rel_stepsizes",
           "autoattack_steps", "autoattack_eot")
    assert set(new) <= set(params.ADDED_KEYS) and not set(new) & set(p.as_dict())
    assert store.params_digest(p.replace(attack_restarts=2)) != store.params_digest(p)
    for key, bad in (("attack_restarts", 0), ("attack_checks", 0), ("strength_restarts", 1),
                     ("autoattack_steps", 0), ("autoattack_eot", 0)):
        with pytest.raises(ValueError, match=key):
            params.load("params/smoke.yaml", **{key: bad})
