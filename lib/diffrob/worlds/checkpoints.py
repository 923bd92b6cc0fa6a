"""Local files of the paper's worlds: find them, or fail at once with a message that helps.

The real worlds never download anything while loading (the build and test
machines have no network): every checkpoint and data file is looked up on
disk first, and a missing one raises :class:`MissingFileError` naming the
file, the folder it was looked for in and where it comes from (docs/worlds.md). A file that is there but cannot be read as what it should
be (truncated, corrupt, another architecture) raises :class:`BadFileError`
naming the file, what was expected and where a good copy comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..attacks.apgd import import_autoattack

DOCS = "see docs/worlds.md"


class MissingFileError(FileNotFoundError):
    """A checkpoint or data file of a real world is not on disk."""


class BadFileError(ValueError):
    """A checkpoint or data file is on disk but is not what it should be."""


def bad_file(path: Path | str, expected: str, source: str, error: BaseException | str
             ) -> BadFileError:
    """The error for ``path`` that could not be read as ``expected`` (``error`` says why)."""
    why = error if isinstance(error, str) else (
        f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}")
    return BadFileError(f"{Path(path).expanduser().resolve()}: expected {expected}, but it "
                        f"could not be read ({why}). It may be truncated, damaged or another "
                        f"file: get a good copy from {source}; {DOCS}.")


def missing(what: str, name: str, folders: list[Path], source: str) -> MissingFileError:
    """The error for ``name`` absent from every folder in ``folders``."""
    where = " or ".join(str(Path(f).expanduser().resolve()) for f in folders)
    return MissingFileError(f"{what}: file {name!r} not found in {where}. "
                            f"It comes from {source}; {DOCS}.")


def require(path: Path | str, what: str, source: str) -> Path:
    """``path`` if it is a file, else :class:`MissingFileError` (no download is attempted)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing(what, path.name, [path.parent], source)
    return path


def first_present(name: str, folders: list[Path], what: str, source: str) -> Path:
    """The first ``folder / name`` that is a file, else :class:`MissingFileError` naming them all."""
    for folder in folders:
        if (Path(folder).expanduser() / name).is_file():
            return Path(folder).expanduser() / name
    raise missing(what, name, folders, source)


def check_all(*checks: Callable[[], object]) -> None:
    """Run every check; raise one :class:`MissingFileError` listing all missing files."""
    errors = []
    for check in checks:
        try:
            check()
        except MissingFileError as e:
            errors.append(str(e))
    if errors:
        raise MissingFileError("\n".join(errors))


def import_robustbench():
    """Import robustbench 1.1.1, whose ``autoattack`` dependency is installed as ``pyautoattack``."""
    import_autoattack()
    import robustbench

    return robustbench
