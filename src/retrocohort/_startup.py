"""Ctrl-C while the ``retrocohort`` command is still importing its libraries.

Starting the command imports pandas, DuckDB, ibis, matplotlib and the rest, which takes seconds on a
busy machine. A Ctrl-C in that time would print a KeyboardInterrupt traceback from deep inside some
library. While the command starts, :func:`install` turns it into one line on stderr and exit code 2
(nothing has been read or written yet); :func:`release` gives Ctrl-C back once the imports are done.

Only the command is affected: ``import retrocohort`` from Python (a notebook, a script) keeps
Python's own Ctrl-C behaviour.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any

EXIT_INTERRUPTED = 2
_previous: Any = None


def _is_command() -> bool:
    # The console script is named retrocohort; `python -m retrocohort.cli` shows "-m" as argv[0]
    # while the package is being imported.
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or os.path.basename(first) in ("retrocohort", "retrocohort.exe")


def _interrupted(signum: int, frame: Any) -> None:
    # Exit at once rather than raise: an exception raised inside a library's import can be caught and
    # re-raised as an ImportError with a traceback (numpy wraps whatever fails in its C-extension import).
    # Nothing has been read or written yet, so there is nothing to clean up.
    message = (
        "error: interrupted (Ctrl-C) while retrocohort was starting; nothing was read or written. "
        "Run the command again when ready.\n"
    )
    with contextlib.suppress(OSError):
        sys.stdout.flush()
        os.write(sys.stderr.fileno(), message.encode())
    os._exit(EXIT_INTERRUPTED)


def install() -> None:
    """Turn Ctrl-C into a one-line message and exit code 2 until :func:`release` (command only)."""
    global _previous
    if _previous is not None or not _is_command() or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # Ctrl-C ignored (nohup, a background job) or handled by someone else: leave it so
    _previous = signal.signal(signal.SIGINT, _interrupted)


def release() -> None:
    """Give Ctrl-C its previous handler back."""
    global _previous
    if _previous is not None:
        signal.signal(signal.SIGINT, _previous)
        _previous = None
