"""One place for progress bars, summaries and fatal errors, so every command reports the same way."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click
from tqdm import tqdm

T = TypeVar("T")


class UserError(click.ClickException):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""

    exit_code = 2


def progress(items: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool | None = None) -> Iterator[T] | tqdm:
    """A tqdm bar on stderr; hidden when stderr is not a terminal unless forced with disable=False."""
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(items, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                file=sys.stderr)


def info(message: str) -> None:
    """A summary line for the user (stderr, so stdout stays machine-readable)."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    """A warning line for the user."""
    click.echo(f"warning: {message}", err=True)
