"""Options checked at the edge: every command's numeric options use these click types, so NaN, infinity
and values out of range stop the command with one line naming the option (exit status 2); commands built
with `OneLineCommand` / `OneLineGroup` print such a bad value as that one line, without click's usage
text."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float in [min, max] (either end open or absent) that is never NaN or infinite."""

    name = "number"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.types.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def finite(min: float | None = None, max: float | None = None, *, min_open: bool = False,
           max_open: bool = False) -> FiniteFloat:
    """`type=finite(0, min_open=True)`: a finite float above 0."""
    return FiniteFloat(min, max, min_open=min_open, max_open=max_open)


POSITIVE = finite(0, min_open=True)            # > 0
NON_NEGATIVE = finite(0)                       # >= 0
FRACTION = finite(0, 1)                        # in [0, 1]
COUNT = click.IntRange(min=1)                  # 1, 2, ...
NATURAL = click.IntRange(min=0)                # 0, 1, ...
SEED = click.IntRange(0, 2**32 - 1)            # what numpy's and torch's generators take


def pixel_size(text: str, what: str) -> tuple[int, int]:
    """'HxW' -> (h, w), both at least 1; click.BadParameter (one line) otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected HxW, e.g. 320x320", param_hint=what) from None
    if h < 1 or w < 1:
        raise click.BadParameter(f"{text!r}: both sides must be at least 1 pixel", param_hint=what)
    return h, w


def width_height(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (a frame size, as make_synthetic and the GPU check's data take it) -> (w, h);
    click.BadParameter (one line) otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 320x240") from None
    return w, h


def _one_line(error: click.BadParameter) -> click.BadParameter:
    error.ctx = None                  # without a context click prints no usage text, only "Error: ..."
    return error


class OneLineCommand(click.Command):
    """A click command whose bad option values (click.BadParameter, from a type or the command's own code)
    are one line, exit status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as e:
            raise _one_line(e) from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.BadParameter as e:
            raise _one_line(e) from None


class OneLineGroup(click.Group):
    """A click group whose subcommands are OneLineCommands."""

    command_class = OneLineCommand
