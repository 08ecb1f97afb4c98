"""The ``xaistudy`` command: one click group, commands registered from per-stage modules.

Each stage's commands live in their own module here (``xaistudy/cli/<stage>.py``) and
import their package lazily, so ``xaistudy serve`` never loads torch. Nothing below the
command line imports this package (``tests/architecture/test_imports.py`` proves it).
"""

from __future__ import annotations

import sys

import click

from xaistudy import __version__
from xaistudy.errors import UserError


class _Group(click.Group):
    """Turns a :class:`UserError` anywhere below into one ``Error: ...`` line, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xaistudy")
def cli() -> None:
    """Run user studies of explanation methods for image classifiers.

    generate -> train -> explain -> serve -> analyze
    """


def _register() -> None:
    from importlib import import_module

    for stage in ("generator", "model", "explain", "server", "analysis", "demo"):
        for command in import_module(f"xaistudy.cli.{stage}").COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
