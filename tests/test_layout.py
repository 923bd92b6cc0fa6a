"""The library's layout (docs/design.md): shared floors below, one wing per paper section
above, chapters that narrate and call on top. Checked on the sources, without running them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "diffrob"
WINGS = ("setup", "distances", "fuzzy", "cap", "compression", "summary")
WING_FILES = ("__init__.py", "analysis.py", "runs.py", "report.py")
TOP = ("cli",)  # the command line may call any wing, as a chapter does
# What pure analysis may not touch: results, worlds, pages, terminals.
IMPURE = ("store", "stages", "worlds", "figures", "progress", "claims", "chapter")
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]*_*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every diffrob module that ``path`` imports (absolute or relative, at any depth)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("diffrob")}
        elif isinstance(node, ast.ImportFrom):
            base = (package[:len(package) - node.level + 1] if node.level else [])
            module = ".".join(base + ([node.module] if node.module else []))
            if module.startswith("diffrob"):
                found |= {module} | {f"{module}.{a.name}" for a in node.names}
    return found


def layer(module: str) -> str:
    """``wing:<name>``, ``top`` or ``floor`` of a diffrob module (or of a name in one)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in WINGS:
        return f"wing:{parts[1]}"
    return "top" if len(parts) > 1 and parts[1] in TOP else "floor"


SOURCES = sorted(LIB.rglob("*.py"))


def test_every_wing_has_the_same_files_and_nothing_else_is_flat() -> None:
    for wing in WINGS:
        have = sorted(p.name for p in (LIB / wing).glob("*.py"))
        assert set(WING_FILES) <= set(have), f"{wing}/: {have}, expected {WING_FILES}"
        assert all(re.fullmatch(r"__init__\.py|(analysis|runs|report)(_\w+)?\.py", n)
                   for n in have), f"{wing}/: files beyond analysis, runs and report: {have}"
    flat = {p.stem for p in LIB.glob("*.py")}
    assert not flat & set(WINGS), f"a wing is also a flat module: {flat & set(WINGS)}"


@pytest.mark.parametrize("source", SOURCES, ids=[module_name(s) for s in SOURCES])
def test_no_upward_import_and_no_wing_imports_another(source: Path) -> None:
    mine = layer(module_name(source))
    for other in imports(source):
        theirs = layer(other)
        if mine == "floor":
            assert theirs == "floor", f"{module_name(source)} (a floor) imports {other}"
        elif mine.startswith("wing:"):
            assert theirs in ("floor", mine), f"{module_name(source)} imports {other} ({theirs})"


@pytest.mark.parametrize("wing", WINGS)
def test_analysis_is_pure(wing: str) -> None:
    """A wing's analysis takes tensors and knobs as arguments: no store, world, page or bar."""
    path = LIB / wing / "analysis.py"
    bad = {m for m in imports(path) if m.split(".")[1:2] and m.split(".")[1] in IMPURE}
    text = path.read_text()
    assert not bad and "tqdm" not in text, f"{wing}/analysis.py imports {sorted(bad)}"
    assert "world.params" not in text, f"{wing}/analysis.py reads world.params"


def test_the_store_knows_nothing_of_attacks_and_stages_go_through_one_primitive() -> None:
    assert not {m for m in imports(LIB / "store.py") if "attacks" in m}
    store_text = (LIB / "store.py").read_text()
    assert "attack_seed" not in store_text and "eot" not in store_text.replace("eot_batch", "")
    direct = [f"{module_name(p)}: {m.group(0)}" for p in SOURCES if p.name != "store.py"
              for m in re.finditer(r"store\.(read|write|claim|each)\(", p.read_text())]
    assert not direct, f"results stored around store.cached: {direct}"


def test_an_attack_kind_is_asked_of_the_registry_only() -> None:
    """No module string-matches an attack's name to learn its kind."""
    pattern = re.compile(r"""\.(startswith|endswith)\(\s*["'](bpda|pgd|apgd|eot|-eot)["']|"""
                         r"""["'](dlr|eot)["']\s+in\s+\w*attack""")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in [*SOURCES, *CHAPTERS]
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, f"attack kinds read from names (use diffrob.attacks.get): {hits}"


def test_the_seed_rule_is_written_once() -> None:
    rule = re.compile(r"attack_seed\s*<\s*\w*\.?n_evals")
    hits = [module_name(p) for p in SOURCES if rule.search(p.read_text())]
    assert hits == ["diffrob.attacks.system"], hits


ISSUE = re.compile(r"[Ii]ssues? ?#?\d+")


def test_comments_cite_the_paper_not_the_tracker() -> None:
    folders = [LIB, ROOT / "book", ROOT / "params", ROOT / "scripts", ROOT / "tests",
               ROOT / "docs", ROOT / "bench"]
    hits = [f"{p.relative_to(ROOT)}:{i}" for folder in folders for p in sorted(folder.rglob("*"))
            if p != Path(__file__)
            and p.is_file() and p.suffix in (".py", ".yaml", ".md", ".mjs", ".ipynb")
            for i, line in enumerate(p.read_text().splitlines(), 1) if ISSUE.search(line)]
    assert not hits, f"issue numbers in the sources: {hits}"


# --- chapters narrate and call -------------------------------------------------------------

def chapter_code(chapter: Path) -> list:
    """The chapter's code cells, less the Colab install cell (written by `make colab-cells`)."""
    return [c for c in jupytext.read(chapter).cells if c.cell_type == "code"
            and not c.source.lstrip().startswith("# Colab:")]


ALLOWED_IMPORTS = ("matplotlib.pyplot", "IPython.display")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapters_narrate_and_call(chapter: Path) -> None:
    """At most two library modules (the chapter opener and the wing's report), no table built,
    no loop, no random draw and at most one decision in a chapter."""
    trees = [ast.parse(c.source) for c in chapter_code(chapter)]
    nodes = [n for t in trees for n in ast.walk(t)]
    library, other = set(), set()
    for n in nodes:
        names = ([a.name for a in n.names] if isinstance(n, ast.Import) else
                 [f"{n.module}.{a.name}" if n.module == "diffrob" else n.module for a in n.names]
                 if isinstance(n, ast.ImportFrom) else [])
        library |= {m for m in names if m.startswith("diffrob")}
        other |= {m for m in names if not m.startswith("diffrob")}
    assert len(library) <= 2 and "diffrob.chapter" in library, f"{chapter.name}: {library}"
    assert all(layer(m) != "floor" or m == "diffrob.chapter" for m in library), library
    assert other <= set(ALLOWED_IMPORTS), f"{chapter.name} imports {sorted(other)}"
    ifs = sum(isinstance(n, (ast.If, ast.IfExp)) for n in nodes)
    loops = [type(n).__name__ for n in nodes if isinstance(
        n, (ast.For, ast.While, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp))]
    frames = [n for n in nodes if isinstance(n, ast.Call) and
              getattr(n.func, "attr", getattr(n.func, "id", "")) in ("DataFrame", "Series")]
    draws = [n for n in nodes if isinstance(n, ast.Attribute) and n.attr in (
        "rand", "randn", "randint", "manual_seed", "default_rng", "normal", "uniform")]
    assert ifs <= 1, f"{chapter.name}: {ifs} decisions (if) in the chapter; move them to lib"
    assert not loops, f"{chapter.name}: loops over results in the chapter: {loops}"
    assert not frames, f"{chapter.name}: builds {len(frames)} tables; the wing's report does"
    assert not draws, f"{chapter.name}: draws random numbers"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_the_prose_names_library_functions_that_exist(chapter: Path) -> None:
    """The prose names the library function behind its results (as QuantEcon's lectures
    name their classes), and every name it gives is real."""
    import importlib

    text = "\n".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "markdown")
    named = sorted(set(re.findall(r"`(diffrob(?:\.\w+)+)`", text)))
    assert named, f"{chapter.name}: the prose names no library function"
    for dotted in named:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{chapter.name}: `{dotted}` does not exist"
            obj = getattr(obj, attr)
