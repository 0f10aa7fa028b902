"""The typer application object that every command module registers on."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable
from typing import NoReturn

import typer
from typer.core import TyperOption

app = typer.Typer(
    name="brainxai",
    help=(
        "Explainable brain-tumour MRI classification (glioma, meningioma, pituitary, no tumour). "
        "Research use only, not a diagnostic device."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def invocation(ctx: typer.Context) -> str:
    """The running command as one shell line, for reports that say how they were made.

    Rebuilt from the command's parsed values: the command path, then every option whose value differs from
    its default (flags by the spelling that gives their value; a repeatable option once per value), then
    the arguments. So the line is the same however the options were ordered or spelt (a short alias, say).
    """
    words = ctx.command_path.split()
    arguments: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name == "argument":
            arguments += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None]
            continue
        if not isinstance(param, TyperOption) or value is None or value == param.default:
            continue
        if param.is_flag:
            spelling = param.opts if value else param.secondary_opts
            words += spelling[:1]
        else:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                words += [param.opts[0], str(getattr(v, "value", v))]  # an Enum choice by its value
    return shlex.join(words + arguments)


def fail(message: str, code: int = 1) -> NoReturn:
    """Prints an error to stderr and exits with ``code`` (no traceback for user errors)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def check_methods(names: Iterable[str]) -> None:
    """Fails, before any model is loaded or file read, when a name is not a registered explanation method."""
    from brainxai.explain import list_explainers

    known = list_explainers()
    unknown = [n for n in names if n not in known]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        fail(f"unknown method{plural} {', '.join(map(repr, unknown))}; available: {', '.join(known)}")
