"""One place for progress bars, summaries and fatal errors, so every command reports the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import click

from siammae_common.progress import Progress

T = TypeVar("T")


class UserError(click.ClickException):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""

    exit_code = 2


def progress(items: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool | None = None, **kw: Any) -> Progress[T]:
    """Progress on stderr: a tqdm bar on a terminal, plain timestamped lines in a log file (every 1% of
    `total` or 30 s by default; see siammae_common.progress), nothing with disable=True."""
    return Progress(items, total=total, desc=desc, unit=unit, disable=disable, **kw)


def info(message: str) -> None:
    """A summary line for the user (stderr, so stdout stays machine-readable)."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    """A warning line for the user."""
    click.echo(f"warning: {message}", err=True)
