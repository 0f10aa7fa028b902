"""The typer application object that every command module registers on."""

from __future__ import annotations

import logging

import typer

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


def fail(message: str, code: int = 1) -> None:
    """Prints an error to stderr and exits with ``code`` (no traceback for user errors)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
