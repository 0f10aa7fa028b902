"""``invocation``: the command line a report writes about itself, rebuilt from the parsed options."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from brainxai.cli.app import invocation

demo = typer.Typer(name="brainxai")


@demo.callback()
def _root() -> None:
    """A group, so the command path has the subcommand in it as in the real CLI."""


@demo.command("measure")
def _measure(
    ctx: typer.Context,
    source: Path = typer.Argument(...),
    boxes: Path = typer.Option(..., "--boxes"),
    methods: str = typer.Option("all", "--methods"),
    steps: int = typer.Option(20, "--steps"),
    sanity: bool = typer.Option(True, "--sanity/--no-sanity"),
    evidence: bool = typer.Option(False, "--show-evidence"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", "-c"),
    tag: list[str] = typer.Option([], "--tag"),
) -> None:
    typer.echo(invocation(ctx))


def _line(args: list[str]) -> str:
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_defaults_are_left_out_and_the_rest_kept_in_declaration_order() -> None:
    line = _line(["measure", "scans", "--steps", "5", "--boxes", "b.csv", "--methods", "all"])
    assert line == "brainxai measure --boxes b.csv --steps 5 scans"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--no-sanity"], "--no-sanity"),  # a two-way flag off: its second spelling
        (["--show-evidence"], "--show-evidence"),  # a one-way flag on
        (["--sanity"], ""),  # the default, said explicitly: left out
    ],
)
def test_flags_are_spelt_by_their_value(args: list[str], expected: str) -> None:
    line = _line(["measure", "s", "--boxes", "b.csv", *args])
    assert line == " ".join(w for w in ["brainxai measure --boxes b.csv", expected, "s"] if w)


def test_a_short_alias_and_a_repeated_option() -> None:
    line = _line(["measure", "s", "-c", "ck", "--tag", "a", "--boxes", "b.csv", "--tag", "b"])
    assert line == "brainxai measure --boxes b.csv --checkpoint ck --tag a --tag b s"


def test_the_line_is_quoted_for_the_shell_and_round_trips() -> None:
    line = _line(["measure", "my scans", "--boxes", "box set/b.csv", "--checkpoint", "runs/it's/best"])
    assert shlex.split(line) == [
        "brainxai",
        "measure",
        "--boxes",
        "box set/b.csv",
        "--checkpoint",
        "runs/it's/best",
        "my scans",
    ]
    # Running the line again gives the same line.
    assert _line(shlex.split(line)[1:]) == line
