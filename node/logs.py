"""Structured, quiet-by-default logging: one ``key=value`` line per event.

Fields passed with ``extra={...}`` are printed after the message. The default level is
WARNING; ``-v`` shows INFO and ``-vv`` DEBUG.
"""

from __future__ import annotations

import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={_q(record.getMessage())}"]
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                parts.append(f"{key}={_q(value)}")
        if record.exc_info:
            parts.append(f"exc={_q(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _q(value: object) -> str:
    text = value.hex() if isinstance(value, bytes) else str(value)
    return f'"{text}"' if (" " in text or "=" in text or not text) else text


def setup(verbosity: int = 0, stream: object = None, logfile: str | None = None) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    )
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("ponas")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class StatusLine:
    """A progress line on stderr: redrawn in place on a terminal, one line each otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.width = 0

    def __call__(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r" + text[:120].ljust(self.width))
            self.width = min(len(text), 120)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            self.width = 0
