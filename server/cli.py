"""The `idgw` console script: composes the command groups of every package."""

from __future__ import annotations

import click

from engine.cli import policy


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="id-gateway", prog_name="idgw")
def main() -> None:
    """ID Gateway: policy-as-code decisions for regulated identity checks.

    \b
    Example:
      idgw policy lint policies/
      idgw serve --port 8080
    """


main.add_command(policy)
