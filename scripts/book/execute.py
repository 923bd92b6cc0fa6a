"""Run one chapter with papermill, as the terminal should show it.

A wrong parameter file or key stops the build before any kernel starts, in one line
naming the closest valid keys (:func:`check_parameters`); papermill's "Passed unknown
parameter" notice is kept only for keys that are not parameters (the chapters read every
``diffrob.params`` key through ``params.load_notebook``, so for those the notice is false;
:class:`KnownParameters`); kernels talk over IPC sockets (no "TCP without encryption"
warning; :class:`IPCKernelManager`); and each chapter's kernel appends its stage progress
(which attack or stage, batches done, elapsed and remaining time; :mod:`diffrob.progress`)
to ``_build/logs/<chapter>.progress``, printed here as it comes (:class:`ProgressLog`).
Several chapters may run in turn in one kernel (:class:`SharedKernel`, the tests' chapters):
torch and the project are then imported once, each chapter starting from an empty namespace.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from book import LOGS, ROOT

# Seconds a kernel may take to answer its first message: papermill's 60 are too few for a
# kernel importing torch on a loaded 2-core machine (several chapters or tests at once).
START_TIMEOUT_S = 300
from book.postprocess import hide_default_parameters, strip_progress_bars


def check_parameters(params_file: str, overrides: dict[str, Any], root: Path = ROOT) -> None:
    """Exit with one line (status 2) if the parameter file or an override is wrong: before any
    kernel starts, as the chapters would read them (from ``root``), with the closest keys."""
    from diffrob import params

    path = Path(params_file)
    try:
        params.load(path if path.is_absolute() else root / path, **overrides)
    except (ValueError, FileNotFoundError) as err:
        print(f"build_book: error: {err}".replace(str(root) + os.sep, ""), file=sys.stderr)
        raise SystemExit(2) from None


class IPCKernelManager(AsyncKernelManager):
    """A kernel reached over local IPC sockets instead of TCP (no unencrypted TCP port)."""

    @default("transport")
    def _transport_default(self) -> str:
        return "ipc"


class SharedKernel:
    """One kernel that runs chapters in turn (``execute(..., kernel=shared)``): the imports
    (torch, diffusers, the project: seconds per chapter) happen once.

    Before each chapter the kernel's namespace is emptied (``%reset -f``), its figures are
    closed and the chapter's progress log is named, so that a chapter still sees no name an
    earlier one defined; imported modules stay. A kernel that died is started afresh.
    ``close()`` shuts it down.
    """

    RESET = ("get_ipython().run_line_magic('reset', '-f')\n"
             "import os as _os, matplotlib.pyplot as _plt\n"
             "_plt.close('all')\n"
             "_os.environ.update({env!r})\n"
             "del _os, _plt")

    def __init__(self, cwd: Path = ROOT) -> None:
        self.cwd, self.km = cwd, None

    def ready(self, env: dict[str, str]) -> IPCKernelManager:
        """The kernel, alive, with an empty namespace and ``env`` in its environment."""
        from jupyter_core.utils import run_sync
        from nbclient import NotebookClient
        from nbformat import v4

        if self.km is None or not run_sync(self.km.is_alive)():
            self.km = IPCKernelManager(kernel_name="python3")
            run_sync(self.km.start_kernel)(cwd=str(self.cwd))
        reset = v4.new_notebook(cells=[v4.new_code_cell(self.RESET.format(env=env))])
        NotebookClient(reset, km=self.km, startup_timeout=START_TIMEOUT_S).execute()
        return self.km

    def close(self) -> None:
        from jupyter_core.utils import run_sync

        if self.km is not None and run_sync(self.km.is_alive)():
            run_sync(self.km.shutdown_kernel)(now=True)
        self.km = None


class KnownParameters(logging.Filter):
    """Drop papermill's "Passed unknown parameter: KEY" when KEY is a ``diffrob.params`` key.

    papermill knows only the names of a chapter's parameters cell (``params_file``); the
    chapters take every other key of :class:`diffrob.params.Params` from the injected
    variables. Other keys keep the notice (and the chapter then stops on them).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from diffrob.params import FIELDS

        prefix = "Passed unknown parameter: "
        message = record.getMessage()
        return not (message.startswith(prefix) and message[len(prefix):] in FIELDS)


class ProgressLog:
    """``with ProgressLog(path): ...``: the kernels started inside write stage progress to
    ``path`` (:mod:`diffrob.progress`), and a thread prints each new line through ``write``."""

    def __init__(self, path: Path, write=None, every: float = 0.5) -> None:
        from tqdm import tqdm

        self.path, self.every = path, every
        self.write = write or (lambda line: tqdm.write(f"   {line}", file=sys.stdout))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "ProgressLog":
        from diffrob.progress import ENV

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.saved = os.environ.get(ENV)
        os.environ[ENV] = str(self.path)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        from diffrob.progress import ENV

        self.stop.set()
        self.thread.join()
        if self.saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self.saved

    def _follow(self) -> None:
        with open(self.path) as log:
            pending = ""
            while True:
                stopping = self.stop.is_set()
                pending += log.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    self.write(line)
                if stopping:
                    return
                self.stop.wait(self.every)


def execute(chapter: Path, out: Path, params_file: str, overrides: dict[str, Any] | None = None,
            cwd: Path = ROOT, progress: bool = True, logs: Path = LOGS,
            kernel: SharedKernel | None = None) -> Path:
    """Run one chapter's paired ``.ipynb`` with papermill into ``out`` and keep its widget state.

    The kernel runs on IPC sockets (:class:`IPCKernelManager`); with ``progress``, its stage
    progress is printed as it comes (:class:`ProgressLog`, ``logs/<chapter>.progress``).
    With ``kernel``, the chapter runs in that :class:`SharedKernel` (started in its own
    ``cwd``) instead of a kernel of its own. tqdm's progress-bar widgets are then removed
    from ``out`` and the chapter's own parameters cell hidden behind papermill's
    (:mod:`book.postprocess`).

    Raises ``FileNotFoundError`` naming the chapter if it has no notebook, and
    papermill's ``PapermillExecutionError`` (the executed copy, with the error, is in
    ``out``) if a cell fails.
    """
    import papermill

    notebook = chapter.with_suffix(".ipynb")
    if not notebook.is_file():
        raise FileNotFoundError(f"chapter {chapter.stem}: {notebook} not found (listed in "
                                f"_toc.yml; pair it with `jupytext --set-formats ipynb,py:percent`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("papermill")
    if not any(isinstance(f, KnownParameters) for f in logger.filters):
        logger.addFilter(KnownParameters())
    with ProgressLog(logs / f"{chapter.stem}.progress", write=None if progress else print):
        from diffrob.progress import ENV

        shared = {} if kernel is None else {"km": kernel.ready({ENV: os.environ[ENV]})}
        papermill.execute_notebook(
            str(notebook), str(out), parameters={"params_file": params_file, **(overrides or {})},
            cwd=str(cwd), kernel_name="python3", language="python", progress_bar=progress,
            store_widget_state=True, kernel_manager_class=IPCKernelManager,
            start_timeout=START_TIMEOUT_S, **shared)
    strip_progress_bars(out)
    hide_default_parameters(out)
    return out
