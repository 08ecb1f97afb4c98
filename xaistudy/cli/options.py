"""Command-line options shared by several stages' commands."""

from __future__ import annotations

from collections.abc import Callable

import click

from xaistudy.executors import EXECUTORS


def executor_options(ray_does: str) -> Callable:
    """``--executor local|ray`` (passed as ``executor_name``) and ``--address``; ``ray_does``
    says what this command runs as Ray tasks."""

    def decorate(command: Callable) -> Callable:
        address = click.option(
            "--address",
            metavar="HOST:PORT",
            help="Ray cluster to join (ray start --head); default: a Ray instance on this machine.",
        )
        name = click.option(
            "--executor",
            "executor_name",
            default="local",
            show_default=True,
            type=click.Choice(EXECUTORS),
            help=f"local: this process; ray: {ray_does} (docs/deploy.md).",
        )
        return name(address(command))

    return decorate
