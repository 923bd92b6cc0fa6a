"""The README as a newcomer follows it (issue 15): every command of its code blocks runs as
written in the activated environment, in a cheap form where the real one takes long
(``make -n`` and ``build_book.py --check`` for make, ``--prepare-only`` for papermill),
and the ones that need a GPU or a cluster are checked as far as their arguments and
skipped with the reason. A command of a kind this file does not know fails here."""

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
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent  # the environment's bin/: what `source .venv/bin/activate` puts first
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
# what each needs beyond this machine; matched against the whole command
NEEDS = {"--submitit slurm": "needs a Slurm cluster",
         "diffrob attack --params params/cifar10.yaml": "needs the CIFAR-10 checkpoints and a GPU",
         "diffrob evaluate --params params/cifar10.yaml": "needs the CIFAR-10 checkpoints and a GPU"}


def commands(markdown: str) -> list[str]:
    """The shell commands of the ```bash blocks: continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


COMMANDS = commands(README)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600, **kw)
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def test_the_readme_has_the_commands_a_newcomer_needs():
    programs = {shlex.split(c)[0] for c in COMMANDS}
    assert {"make", "source", "diffrob", "papermill"} <= programs
    assert "make book" in COMMANDS and "make test" in COMMANDS


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
    done = run(argv)
    if argv[1] == "plan":  # the table comes first: no third-party deprecation notices
        assert done.stdout.startswith(" ") and "in all:" in done.stdout
        assert "Warning" not in done.stderr, done.stderr


def check_papermill(argv: list[str], tmp_path: Path) -> None:
    """The README's one papermill form: writes under _build/, runs with --prepare-only."""
    source, out = argv[1], argv[2]
    assert (ROOT / source).is_file() and out.startswith("_build/")
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_book

    keys = dict(zip(argv[argv.index("-p") + 1::3], argv[argv.index("-p") + 2::3]))
    build_book.check_parameters(keys.pop("params_file"),
                                {k: parse_override(k, v) for k, v in keys.items()})
    target = tmp_path / Path(out).name
    run([argv[0], source, str(target), *argv[3:], "--prepare-only"])
    assert 'eot = 5' in target.read_text().replace('"', " ").replace("\\n", "\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(command: str, tmp_path: Path):
    argv = shlex.split(command)
    if argv[0] == "make":
        check_make(argv)
    elif argv[0] == "source":
        check_activate(argv)
    elif argv[0] == "diffrob":
        check_diffrob(argv, command)
    elif argv[0] == "papermill":
        check_papermill(argv, tmp_path)
    else:
        pytest.fail(f"README command `{command}`: tests/test_readme.py does not know how to run it")


def test_one_papermill_form_in_the_readme_and_the_book():
    """The README and the book's index page give the same papermill command."""
    readme = [c for c in COMMANDS if c.startswith("papermill ")]
    index = [c for c in commands((ROOT / "book" / "index.md").read_text())
             if c.startswith("papermill ")]
    assert len(readme) == 1 and readme == index


def test_nothing_cites_a_file_that_is_not_shipped():
    """params/*.yaml and paper_data/*.yaml once cited FACTS.md, which is not in the repository."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    citing = [f for f in tracked if f.endswith((".py", ".yaml", ".md", ".yml"))
              and f != "tests/test_readme.py" and "FACTS.md" in (ROOT / f).read_text(errors="ignore")]
    assert citing == []


def test_the_cpu_switch_installs_torch_from_the_cpu_index_with_the_projects_versions():
    """README, "A CPU-only install": TORCH=cpu runs scripts/install_torch.py before the
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
