"""The README and docs/ as a newcomer follows them: every command of their ```bash blocks
runs as written in the activated environment, in a cheap form where the real one takes long
(``make -n`` and ``build_book.py --check`` for make, ``--prepare-only`` for papermill),
and the ones that need a GPU, a cluster or the network are checked as far as their
arguments and skipped with the reason. A command of a kind this file does not know fails
here. The README stays a README: at most 100 lines, the rest in docs/."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from diffrob.params import parse_override

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent  # the environment's bin/: what `source .venv/bin/activate` puts first
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
# what each needs beyond this machine; matched against the whole command
NEEDS = {"--submitit slurm": "needs a Slurm cluster",
         "diffrob attack --params params/cifar10.yaml": "needs the CIFAR-10 checkpoints and a GPU",
         "diffrob evaluate --params params/cifar10.yaml": "needs the CIFAR-10 checkpoints and a GPU"}
# what a command needs made first, as the page says (docs/custom.md: export, then check)
BEFORE = {"params/custom.example.yaml": "python scripts/export_custom_example.py"}
# the download recipes of docs/worlds.md: what they fetch
DOWNLOADS = {"hf download ": "fetches a model from the Hugging Face hub",
             "wget ": "fetches a checkpoint over the network",
             "load_model(": "fetches RobustBench's checkpoint and CIFAR-10",
             "diffrob fetch ": "downloads the paper's checkpoints and data"}


def commands(markdown: str) -> list[str]:
    """The shell commands of the ```bash blocks: continuation lines joined, comments dropped,
    a here-document (``python - <<'PY'`` ... ``PY``) kept with its command as one."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        lines = iter(block.replace("\\\n", " ").splitlines())
        for line in lines:
            if heredoc := re.search(r"<<'?(\w+)'?", line):
                body = list(iter(lambda: next(lines), heredoc.group(1)))
                found.append("\n".join([line.strip(), *body, heredoc.group(1)]))
                continue
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


COMMANDS = [(page_name(page), command) for page in PAGES for command in commands(page.read_text())]


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600, **kw)
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def test_the_readme_is_short_and_has_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 100, "the README is at most 100 lines: the rest goes to docs/"
    assert commands(readme) == ["make book", "make test"]
    assert "docs/design.md" in readme


def test_the_docs_have_the_commands_a_newcomer_needs():
    programs = {shlex.split(c)[0] for _, c in COMMANDS}
    assert {"make", "source", "diffrob", "papermill"} <= programs


def test_every_page_of_docs_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    unlinked = [page_name(p) for p in PAGES[1:] if f"]({page_name(p)})" not in readme]
    assert unlinked == []


def check_make(argv: list[str]) -> None:
    """``make -n``: the target exists and what it runs; the build itself: ``--check``."""
    plan = run(["make", "-n", *argv[1:]]).stdout
    build = [line for line in plan.splitlines() if "scripts/build_book.py" in line]
    if argv[1] in ("book", "chapter"):
        assert len(build) == 1, plan
        line = shlex.split(build[0])
        out = run([sys.executable, *line[1:], "--check"]).stdout
        assert out.startswith("would execute")
    elif argv[1] in ("env", "test"):
        assert "-m venv .venv" in plan or (ROOT / ".venv" / ".installed").exists()


def check_activate(argv: list[str]) -> None:
    """``source .venv/bin/activate``: make creates that venv, whose bin/ holds the commands."""
    assert argv[1] == ".venv/bin/activate"
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^VENV\s*:?=\s*\.venv$", make, re.M) and "-m venv $(VENV)" in make
    for program in ("diffrob", "papermill", "jb", "activate"):
        assert (BIN / program).exists(), f"{program} is not in {BIN}"


def check_diffrob(argv: list[str], command: str) -> None:
    from diffrob import cli, params

    args = cli.parser().parse_args(argv[1:])  # what argparse would refuse
    params.load(ROOT / args.params, **{k: v for k, v in args.set})
    reason = next((why for what, why in NEEDS.items() if what in command), None)
    if reason:
        pytest.skip(f"`{command}` {reason}; its arguments and parameters are valid")
    for what, before in BEFORE.items():  # each test runs alone: the page's earlier step too
        if what in command:
            run(shlex.split(before))
    done = run(argv)
    if argv[1] == "plan":  # the table comes first: no third-party deprecation notices
        assert done.stdout.startswith(" ") and "in all:" in done.stdout
        assert "Warning" not in done.stderr, done.stderr


def check_papermill(argv: list[str], tmp_path: Path) -> None:
    """The docs' one papermill form: writes under _build/, runs with --prepare-only."""
    source, out = argv[1], argv[2]
    assert (ROOT / source).is_file() and out.startswith("_build/")
    sys.path.insert(0, str(ROOT / "scripts"))
    from book.execute import check_parameters

    keys = dict(zip(argv[argv.index("-p") + 1::3], argv[argv.index("-p") + 2::3]))
    check_parameters(keys.pop("params_file"), {k: parse_override(k, v) for k, v in keys.items()})
    target = tmp_path / Path(out).name
    run([argv[0], source, str(target), *argv[3:], "--prepare-only"])
    assert 'eot = 5' in target.read_text().replace('"', " ").replace("\\n", "\n")


def check_mkdir(argv: list[str], tmp_path: Path) -> None:
    """``mkdir -p`` of a folder inside the project: made in a scratch copy of the layout."""
    assert argv[1] == "-p" and not Path(argv[2]).is_absolute()
    subprocess.run(argv, cwd=tmp_path, check=True)
    assert (tmp_path / argv[2]).is_dir()


def check_python(argv: list[str]) -> None:
    """A script of the project, run with this environment's Python; the GPU benchmark only
    as far as its CPU answer (it says why it skips; on a GPU it would run for minutes)."""
    import torch

    if argv[1] == "bench/bench_gpu.py" and torch.cuda.is_available():
        pytest.skip("bench/bench_gpu.py runs for minutes on a GPU: make bench runs it")
    done = run([sys.executable, *argv[1:]])
    if argv[1] == "bench/bench_gpu.py":
        assert "skipped: no CUDA device" in done.stdout, done.stdout


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}: {c.splitlines()[0]}"
                                                         for p, c in COMMANDS])
def test_command_runs_as_written(page: str, command: str, tmp_path: Path):
    fetches = next((why for what, why in DOWNLOADS.items() if what in command), None)
    if fetches:
        pytest.skip(f"{page}: `{command.splitlines()[0]}` {fetches}: needs the network")
    argv = shlex.split(command)
    if argv[0] == "make":
        check_make(argv)
    elif argv[0] == "source":
        check_activate(argv)
    elif argv[0] == "diffrob":
        check_diffrob(argv, command)
    elif argv[0] == "papermill":
        check_papermill(argv, tmp_path)
    elif argv[0] == "mkdir":
        check_mkdir(argv, tmp_path)
    elif argv[0] in ("python", ".venv/bin/python") and argv[1].startswith(("scripts/", "bench/")):
        check_python(argv)
    else:
        pytest.fail(f"{page}: command `{command}`: tests/test_readme.py does not know how to run it")


def test_one_papermill_form_in_the_docs_and_the_book():
    """docs/ and the book's index page give the same papermill command."""
    docs = [c for _, c in COMMANDS if c.startswith("papermill ")]
    index = [c for c in commands((ROOT / "book" / "index.md").read_text())
             if c.startswith("papermill ")]
    assert len(docs) == 1 and docs == index


def test_nothing_cites_a_file_that_is_not_shipped():
    """params/*.yaml and paper_data/*.yaml once cited FACTS.md, which is not in the repository."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    citing = [f for f in tracked if f.endswith((".py", ".yaml", ".md", ".yml"))
              and f != "tests/test_readme.py" and (ROOT / f).is_file()
              and "FACTS.md" in (ROOT / f).read_text(errors="ignore")]
    assert citing == []


def test_the_cpu_switch_installs_torch_from_the_cpu_index_with_the_projects_versions():
    """docs/install.md, "CPU-only or CUDA": TORCH=cpu runs scripts/install_torch.py before the
    project, TORCH=default does not; the versions are pyproject.toml's."""
    import tomllib

    sys.path.insert(0, str(ROOT / "scripts"))
    import install_torch

    cpu = run(["make", "-n", "-B", "env", "TORCH=cpu"]).stdout.splitlines()
    default = run(["make", "-n", "-B", "env", "TORCH=default"]).stdout
    steps = [i for i, line in enumerate(cpu) if "install_torch.py" in line or "pip install" in line]
    assert "install_torch.py --index-url https://download.pytorch.org/whl/cpu" in cpu[steps[0]]
    assert "pip install -e" in cpu[steps[1]] and "install_torch.py" not in default
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert install_torch.torch_requirements() == [d for d in deps if re.match(r"torch(vision)?[<>=]", d)]
