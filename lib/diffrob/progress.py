"""Stage progress in the terminal while a chapter runs in a kernel.

In a notebook kernel, tqdm's bars are widgets: ``make book`` would show only papermill's
cell counter. When the environment names a log file (:data:`ENV`, set by
``scripts/build_book.py`` for each chapter), :func:`install` makes ``tqdm.auto``'s bar
also append one line per bar every :data:`EVERY` seconds, and when it starts and ends:
the stage (the bar's description: which attack, which evaluation), its count
(batches), elapsed and remaining time. ``build_book.py`` prints the lines as they come.
Without the variable nothing changes.
"""

from __future__ import annotations

import os
import time

ENV = "DIFFROB_PROGRESS_LOG"
EVERY = 10.0  # seconds between two lines of one bar


def install(path: str | None = None) -> bool:
    """Subclass ``tqdm.auto.tqdm`` so that every bar also logs to ``path`` (default: $ENV).

    Must run before the modules that do ``from tqdm.auto import tqdm`` (the package's
    ``__init__`` calls it). Returns whether bars now log.
    """
    path = path or os.environ.get(ENV)
    if not path:
        return False
    import tqdm.auto

    base = tqdm.auto.tqdm
    if hasattr(base, "log_path"):
        return True

    class LoggedBar(base):
        @property
        def log_path(self) -> str:
            """$ENV as it is now (a kernel that runs several chapters names each one's log)
            or, without it, ``path``."""
            return os.environ.get(ENV) or path

        def display(self, *args, **kwargs):
            shown = super().display(*args, **kwargs)
            self.log_line()
            return shown

        def close(self) -> None:
            if not self.disable and not getattr(self, "_logged_close", False):
                self._logged_close = True
                self.log_line(force=True)
            super().close()

        def log_line(self, force: bool = False) -> None:
            now, last = time.monotonic(), getattr(self, "_logged_at", None)
            if not force and last is not None and now - last < EVERY:
                return
            self._logged_at = now
            meter = self.format_meter(**{**self.format_dict, "ncols": 0})
            with open(self.log_path, "a") as log:
                log.write(meter.replace("\r", "").strip() + "\n")

    tqdm.auto.tqdm = LoggedBar
    return True
