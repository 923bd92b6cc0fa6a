"""Run parameters: one typed, validated definition of every knob, with its default.

Defaults are the embedded `digits` world's; `params/cifar10.yaml` and
`params/imagenet.yaml` carry the paper's settings (Appendix B, Table S1).
Every chapter and every command reads its parameters through :func:`load`,
so a typo in a YAML file or a papermill ``-p`` override fails at once with
the key's name and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .attacks.registry import NAMES
from .names import did_you_mean

WORLDS = ("digits", "mnist", "cifar10", "imagenet", "custom")
PURIFIERS = ("ddpm", "reverse", "ddim", "onestep")
ATTACKS = NAMES  # the registry of diffrob.attacks


def _p(default: Any, doc: str, lo: float | None = None, hi: float | None = None,
       choices: tuple | None = None, custom: bool = False, added: bool = False) -> Any:
    """A dataclass field carrying its documentation and its allowed range; ``custom`` marks a
    key that only the custom world reads (:data:`CUSTOM_KEYS`), ``added`` one added after
    results were recorded (:data:`ADDED_KEYS`)."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices, "custom": custom,
            "added": added}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Params:
    """All run parameters. Distances and eps are in [0,1] pixel units."""

    # --- world -----------------------------------------------------------------
    world: str = _p("digits", "which World to load", choices=WORLDS)
    n_images: int = _p(128, "first N test images used by every stage", lo=1)
    batch_size: int = _p(64, "images per batch (eq. 9's batch index counts these)", lo=1)
    model_dir: str = _p("models", "folder with checkpoints (RobustBench model_dir layout)")
    data_dir: str = _p("data", "folder with the data sets of the real worlds")
    diffusion_model: str = _p("", "diffusers hub id or local folder; '' = the world's own "
                              "(custom: a diffusers folder or a guided-diffusion checkpoint)")
    # --- the custom world: your own data and models (docs/custom.md) -------------
    classifier: str = _p("", "a TorchScript or torch.export file, 'robustbench:NAME' or "
                         "'robustbench:DATASET/THREAT/NAME' (in model_dir), 'torchvision:ARCH' "
                         "or 'module.path:factory'; it returns logits", custom=True)
    classifier_weights: str = _p("", "state-dict file of a 'torchvision:' or "
                                 "'module.path:factory' classifier", custom=True)
    data: str = _p("", "test data: .npz or .pt (images in [0,1] N x C x H x W, integer "
                   "labels), a folder with one sub-folder per class, or the CIFAR-10 pickle "
                   "(cifar-10-batches-py/test_batch)", custom=True)
    mean: list[float] = _p([], "per-channel mean the classifier subtracts from [0,1] images "
                           "([] = none)", custom=True)
    std: list[float] = _p([], "per-channel std the classifier divides by after the mean "
                          "([] = none)", custom=True)
    image_size: int = _p(0, "image height = width (an image folder is resized and centre-"
                         "cropped to it; 0 = the data's own)", lo=0, custom=True)
    channels: int = _p(0, "image channels (0 = the data's own)", lo=0, custom=True)
    n_classes: int = _p(0, "classes (0 = the classifier's number of outputs)", lo=0,
                        custom=True)
    results_dir: str = _p("results", "root of the results store (one sub-folder per world)")
    device: str = _p("auto", "'auto' (cuda if present), 'cpu', 'cuda', 'cuda:K' or 'mps'")
    autocast: str = _p("none", "mixed precision of the diffusion model: 'none', 'bf16', 'fp16' "
                       "(GPU), or 'auto': bf16 where the device computes it natively (a CPU with "
                       "AVX-512 BF16 or AMX, a CUDA GPU with bf16), else none; resolved when the "
                       "world loads, and the resolved value keys the results",
                       choices=("none", "bf16", "fp16", "auto"))
    compile: bool = _p(False, "torch.compile the diffusion model (GPU; on a CPU it does not pay: "
                       "docs/benchmarks.md)")
    channels_last: bool = _p(False, "channels_last memory format (GPU)")
    # --- purification (sec. 2, appendix B) ------------------------------------
    purifier: str = _p("ddpm", "purification method (Table S5)", choices=PURIFIERS)
    t_star: int = _p(10, "diffusion steps t*: t* forward + t* reverse", lo=1)
    base_seed: int = _p(0, "base seed s of eq. 9 for single-seed stages", lo=0)
    checkpointing: bool = _p(True, "activation checkpointing per step for full gradients "
                             "(saves memory; off is faster where the activations fit)")
    # --- attacks (sec. 4, Table S1) --------------------------------------------
    attacks: list[str] = _p(list(ATTACKS[:4]), "attacks run by the attack stage (default: "
                            "Table 1's four)")
    eps_255: float = _p(32.0, "Linf attack radius in units of 1/255", lo=0.0, hi=255.0)
    attack_steps: int = _p(40, "PGD iterations", lo=1)
    rel_stepsize: float = _p(0.01 / 0.3, "PGD step = eps x rel_stepsize (foolbox LinfPGD); up "
                             "to 2, where every constant step lands on a corner of the ball",
                             lo=0.0, hi=2.0)
    random_start: bool = _p(True, "PGD starts at a uniform point of the eps ball")
    eot: int = _p(15, "EOT samples (base seeds) per gradient", lo=1)
    eot_batch: int = _p(0, "EOT samples folded into one forward/backward (0 = all eot), in our "
                        "PGD and the packages' attacks (attacks/fold.py); purifier calls then "
                        "take batch_size x this many rows, in the evaluations and sec. 3.2 too. "
                        "The seeds do not depend on it (results only up to float rounding)",
                        lo=0)
    attack_seed: int = _p(1000, "base seed of the attack's purifier randomness", lo=0)
    # --- fuzzy robustness (sec. 4) ----------------------------------------------
    n_evals: int = _p(100, "r: re-evaluations of every stored example", lo=1)
    vote_k: list[int] = _p([10, 100], "majority-vote group sizes k", lo=1)
    # --- distances (sec. 3.1) ---------------------------------------------------
    uniform_eps_255: list[float] = _p([8.0, 16.0, 32.0, 64.0, 128.0],
                                      "uniform-noise sizes, units of 1/255", lo=0.0, hi=255.0)
    distances_eps_255: float = _p(0.0, "Linf radius of sec. 3.1's attacks, units of 1/255 (0 = "
                                  "eps_255): the regime rule's distance ratio "
                                  "(paper_data/setup.yaml, regime:)", lo=0.0, hi=255.0,
                                  added=True)
    # --- randomness (sec. 3.2) --------------------------------------------------
    n_seeds: int = _p(100, "seeds for the fixed-input experiment", lo=2)
    n_neighbours: int = _p(100, "inputs from the eps ball for the fixed-seed experiment", lo=2)
    randomness_images: int = _p(16, "clean images of the sec. 3.2 experiments (first N)", lo=1)
    randomness_eps_255: float = _p(8.0, "l_inf ball of the sec. 3.2 inputs, units of 1/255 "
                                   "(the paper's 8/255)", lo=0.0, hi=255.0)
    # --- hyperspherical cap (sec. 5, appendix A) --------------------------------
    cap_images: int = _p(64, "clean images sliced", lo=1)
    cap_points: int = _p(1000, "points per 2-D slice", lo=10)
    cap_radius: float = _p(3.0, "l2 radius of the slice disc", lo=0.0)
    cap_fit_c: float = _p(1.0, "inverse L2 strength C of the psychometric logistic fit "
                          "(scikit-learn's default, the paper's slope scale)", lo=0.0)
    # --- compression (sec. 6) ---------------------------------------------------
    pca_samples: int = _p(2000, "neighbourhood samples for the PCA spectrum", lo=2)
    pca_components: int = _p(50, "principal components shown", lo=1)
    jacobian_images: int = _p(16, "first N test images whose Jacobian spectrum and compression "
                              "rates are averaged (may exceed n_images: they need no attack)",
                              lo=1)
    jacobian_chunk: int = _p(64, "vector-Jacobian (and Jacobian-vector) products per batch", lo=1)
    singular_images: int = _p(4, "first N of the jacobian_images whose top singular values are "
                              "estimated without forming J", lo=1)
    singular_top_k: int = _p(16, "largest Jacobian singular values estimated without forming "
                             "J (extension of Fig. 5c; any image size)", lo=1)
    subspace_iterations: int = _p(6, "power iterations of that estimate", lo=0)
    singular_oversample: int = _p(8, "extra random directions of that estimate (each estimate "
                                  "costs (k + these) x (iterations + 1) JVPs and VJPs)", lo=0)
    critical_max: float = _p(5.0, "largest l2 distance searched for the critical threshold",
                             lo=0.0)
    critical_grid: int = _p(500, "steps of critical_max that the critical threshold's search "
                            "walks before bisecting", lo=1, added=True)
    compression_attack: str = _p("pgd-eot", "adversarial examples of Fig. 6: a stored system "
                                 "attack, or 'fixed-pgd' (PGD through the fixed-randomness "
                                 "purifier)", choices=(*ATTACKS, "fixed-pgd"))
    # --- sec. 5-6 measurements ---------------------------------------------------
    rate_samples: int = _p(64, "uniform Linf-ball points per image for the compression rate, "
                           "at each of the jacobian_images images", lo=1)
    gaas_max_k: int = _p(32, "largest k of the measured GAAS construction (appendix A.2)", lo=1)
    # --- purifier variants (appendix C.2, review thread; chapter 04) ----------------
    variant_images: int = _p(16, "first N test images (at most n_images) of the one-step "
                             "denoising and fixed-noise variants (chapter 04)", lo=1)
    # --- attack strength (book/04b_strength; Carlini et al. 2019) ----------------
    pgd_iterate: str = _p("last", "PGD / PGD-EOT / BPDA / transfer return the 'last' iterate "
                          "(Table S1's protocol) or per image the 'best' (highest EOT-mean loss)",
                          choices=("last", "best"))
    pgd_schedule: str = _p("constant", "PGD step size: 'constant' (Table S1) or 'cosine' "
                           "(decays from eps x rel_stepsize to 0)", choices=("constant", "cosine"))
    strength_images: int = _p(16, "first N test images of the attack-strength experiments", lo=1)
    strength_evals: int = _p(20, "r: re-evaluations of each attack-strength example", lo=1)
    strength_steps: int = _p(20, "PGD iterations of the strength experiments (unless varied)",
                             lo=1)
    strength_eot: int = _p(2, "EOT samples of the strength experiments (unless varied)", lo=1)
    strength_eps_255: list[float] = _p([48.0, 96.0, 160.0], "radii of the eps curve, "
                                       "units of 1/255", lo=0.0, hi=255.0)
    strength_step_grid: list[int] = _p([5, 40], "PGD iterations of the steps curve", lo=1)
    strength_eot_grid: list[int] = _p([1, 4], "EOT samples of the EOT curve", lo=1)
    strength_rel_stepsizes: list[float] = _p([0.01 / 0.3, 0.25], "relative steps of the "
                                             "step-size curve (Table S1's eps/30 to eps/4)",
                                             lo=0.0, hi=2.0)
    square_queries: int = _p(1000, "queries per image of the Square attack (the gradient-free "
                             "check of chapter 04b; AutoAttack's standard version uses 5000)",
                             lo=1, added=True)
    apgd_targets: int = _p(9, "target classes of APGD-T, the classes scored highest after the "
                           "label (AutoAttack's n_target_classes, 9)", lo=1, added=True)
    attack_restarts: int = _p(1, "runs from a new random start of PGD (all of our PGD's attacks) "
                              "and APGD-CE / APGD-DLR; per image the run of highest fresh-EOT "
                              "loss (PGD) or the package's highest loss (APGD) wins", lo=1,
                              added=True)
    attack_checks: int = _p(10, "N: evaluations of every iterate by the N-evaluation-aware "
                            "attack nevals-eot (DiffHammer's N)", lo=1, added=True)
    strength_more_rel_stepsizes: list[float] = _p([], "relative steps added to the step-size "
                                                  "grid, so that it extends past its winner; "
                                                  "up to 2 (2 eps: every constant step lands "
                                                  "on a corner of the ball, no larger one "
                                                  "differs)", lo=0.0, hi=2.0, added=True)
    strength_restarts: int = _p(3, "restarts of the restart rows of chapter 04b", lo=2,
                                added=True)
    autoattack_steps: int = _p(100, "APGD iterations of AutoAttack's rand version (chapter "
                               "04b's rows at AutoAttack's budget, its own number)", lo=1,
                               added=True)
    autoattack_eot: int = _p(20, "EOT samples per gradient of AutoAttack's rand version",
                             lo=1, added=True)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))
        given = [k for k in CUSTOM_KEYS if getattr(self, k) != default(k)]
        if given and self.world != "custom":
            raise ValueError(f"parameter(s) {given}: read by world 'custom' only, but world is "
                             f"{self.world!r} (docs/custom.md)")

    @property
    def eps(self) -> float:
        """Attack radius in [0,1] pixel units."""
        return self.eps_255 / 255.0

    @property
    def sec31_eps_255(self) -> float:
        """Sec. 3.1's attack radius, units of 1/255: ``distances_eps_255``, 0 meaning ``eps_255``."""
        return self.distances_eps_255 or self.eps_255

    @property
    def step_size(self) -> float:
        """Absolute PGD step: eps x relative step size (Table S1)."""
        return self.eps * self.rel_stepsize

    @property
    def eot_per_call(self) -> int:
        """EOT samples (or evaluation seeds) folded into one purifier call."""
        return min(self.eot_batch, self.eot) if self.eot_batch else self.eot

    @property
    def store_dir(self) -> Path:
        """Where this world's results live."""
        return Path(self.results_dir) / self.world

    def replace(self, **changes: Any) -> "Params":
        """A copy with some fields changed (validated like :func:`load`)."""
        _reject_unknown(changes)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every parameter, but the custom world's keys and those added after results were
        recorded only where they differ from their defaults: the digests of the parameter
        sets recorded before them (``store.params_digest``) stay what they were."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in (*CUSTOM_KEYS, *ADDED_KEYS) or v != default(k)}


_HINTS = get_type_hints(Params)
FIELDS = {f.name: f for f in dataclasses.fields(Params)}
CUSTOM_KEYS = tuple(k for k, f in FIELDS.items() if f.metadata["custom"])
ADDED_KEYS = tuple(k for k, f in FIELDS.items() if f.metadata["added"])


def default(name: str) -> Any:
    """The default value of parameter ``name``."""
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _expected(name: str) -> str:
    f, hint = FIELDS[name], _HINTS[name]
    text = getattr(hint, "__name__", str(hint)) if get_origin(hint) is None else str(hint)
    if f.metadata["choices"]:
        text += f" in {list(f.metadata['choices'])}"
    if f.metadata["lo"] is not None:
        text += f", >= {f.metadata['lo']}"
    if f.metadata["hi"] is not None:
        text += f", <= {f.metadata['hi']}"
    return text


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check(f: dataclasses.Field, value: Any) -> None:
    hint, meta = _HINTS[f.name], f.metadata
    items = value if get_origin(hint) is list else [value]
    kind = get_args(hint)[0] if get_origin(hint) is list else hint
    bad = (get_origin(hint) is list and not isinstance(value, list)) or not all(
        _is(v, kind) for v in items)
    for v in items if not bad else []:
        bad = bad or (kind is float and not math.isfinite(v))  # NaN passes every < and >
        bad = bad or (meta["choices"] is not None and v not in meta["choices"])
        bad = bad or (meta["lo"] is not None and v < meta["lo"])
        bad = bad or (meta["hi"] is not None and v > meta["hi"])
    if f.name == "attacks" and not bad:
        bad = not set(value) <= set(ATTACKS)
    if f.name == "device" and not bad:
        bad = DEVICE.fullmatch(value) is None
    if bad:
        extra = {"attacks": f" (each of {list(ATTACKS)})",
                 "device": " ('auto', 'cpu', 'cuda', 'cuda:K' or 'mps')"}.get(f.name, "")
        finite = ", finite" if kind is float else ""
        raise ValueError(f"parameter {f.name!r}: expected {_expected(f.name)}{finite}{extra}, "
                         f"got {value!r}")


def _reject_unknown(values: dict[str, Any], source: str = "") -> None:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}{source}{did_you_mean(unknown, FIELDS)}"
                         f"; known parameters: {sorted(FIELDS)}")


def _coerce(name: str, value: Any) -> Any:
    """Floats given as whole numbers in YAML or on the command line become floats."""
    hint = _HINTS[name]
    if hint is float and _is(value, int):
        return float(value)
    if get_origin(hint) is list and get_args(hint)[0] is float and isinstance(value, list):
        return [float(v) if _is(v, int) else v for v in value]
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice (YAML itself keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            k = self.construct_object(key_node, deep=deep)
            if k in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {k!r} given twice (lines {seen[k]} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[k] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML; a syntax error or a duplicate key names ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ValueError(f"{where}{line}: not valid YAML ({problem})") from None


def parse_override(key: str, text: str) -> Any:
    """A ``-p KEY VALUE`` value as papermill types it, for ``diffrob`` and the book build alike.

    YAML scalars and lists (``8``, ``true``, ``[8, 16]``), numbers in any float
    notation (``1e-3``, which YAML 1.1 leaves a string), else the text itself.
    """
    value = _yaml(text, f"-p {key}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _validated(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` with floats coerced, each checked; an error names the key and ``source``."""
    out = {}
    for k, v in values.items():
        out[k] = _coerce(k, v)
        try:
            _check(FIELDS[k], out[k])
        except ValueError as e:
            raise ValueError(f"{e} ({source})") from None
    return out


def load(path: str | Path | None = None, **overrides: Any) -> Params:
    """Read a parameter file from ``params/`` and apply overrides (as papermill passes them).

    Raises ``ValueError`` naming the key and the file (or "overrides") for an
    unknown key, a wrong type, an out-of-range or non-finite value, a key given
    twice, YAML syntax (with the line) and a file without parameters, and
    ``FileNotFoundError`` for a missing file.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"parameter file {path} not found (see params/*.yaml)")
        values = _yaml(path.read_text(), str(path))
        if values is None:
            raise ValueError(f"{path}: no parameters in it (empty or only comments); give at "
                             f"least 'world: ...', or no file for the defaults")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of parameter: value")
        _reject_unknown(values, f" in {path}")
        values = _validated(values, f"in {path}")
    _reject_unknown(overrides, " in overrides")
    values.update(_validated(overrides, "in the overrides"))
    return Params(**values)


_NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open", "params_file"}


def load_notebook(params_file: str | Path, namespace: dict[str, Any]) -> Params:
    """Parameters of a chapter: its ``params_file`` plus the variables papermill injected.

    Every public plain-value variable in ``namespace`` other than ``params_file``
    is taken as an override, so ``papermill -p eot 5`` reaches :func:`load`, and
    a misspelt ``-p`` key fails with the list of known ones. A chapter opened
    from ``book/`` changes to the project root, where relative paths point.
    """
    overrides = {k: v for k, v in namespace.items()
                 if not k.startswith("_") and k not in _NOTEBOOK_NAMES
                 and not isinstance(v, (types.ModuleType, types.FunctionType, type))
                 and not callable(v)}
    path = Path(params_file)
    if not path.is_absolute() and not path.exists():
        # Opened from book/ (Jupyter, Colab): work from the project root, where
        # params/, models/ and results/ live.
        root = next((p for p in Path.cwd().parents if (p / path).exists()), None)
        if root is not None:
            os.chdir(root)
    return load(path, **overrides)
