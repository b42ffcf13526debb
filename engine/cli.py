"""`idgw policy ...`: the policy author commands (lint, test, eval, repl, fmt)."""

from __future__ import annotations

import click


@click.group()
def policy() -> None:
    """Work with policy files: lint, test, eval, repl, fmt."""


__all__ = ["policy"]
