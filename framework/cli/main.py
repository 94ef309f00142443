"""The ``zeroserve`` command group: error handling, and every command group registered."""

from __future__ import annotations

import os
from typing import Any

import click

from zeroserve import __version__
from zeroserve.cli.artifacts import cache_group, models_group, push_command
from zeroserve.cli.build import build_command, package_command, render_command
from zeroserve.cli.deploy import (
    delete_command,
    deploy_command,
    promote_command,
    rollback_command,
    status_command,
)
from zeroserve.cli.history import history_command
from zeroserve.cli.rollout import rollout_command
from zeroserve.cli.serve import predict, serve
from zeroserve.cli.validate import validate_command
from zeroserve.coldstart import ColdStartError
from zeroserve.errors import ZeroserveError, exit_code_for
from zeroserve.settings import Settings


class ZeroserveGroup(click.Group):
    """A click group that prints zeroserve errors as one line, with a traceback only in debug;
    the exit code comes from the error table (``zeroserve.errors.exit_code_for``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ZeroserveError, ColdStartError) as exc:
            if ctx.params.get("debug") or _env_debug():
                raise
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(exit_code_for(exc))


def _env_debug() -> bool:
    return os.environ.get("ZEROSERVE_DEBUG", "").lower() in ("1", "true", "yes")


@click.group(cls=ZeroserveGroup)
@click.version_option(__version__, prog_name="zeroserve")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """zeroserve: serverless, scale-to-zero model serving on KServe."""
    ctx.obj = Settings(debug=debug or _env_debug())


cli.add_command(serve)
cli.add_command(predict)
cli.add_command(push_command)
cli.add_command(models_group)
cli.add_command(cache_group)
cli.add_command(render_command)
cli.add_command(package_command)
cli.add_command(build_command)
cli.add_command(validate_command)
cli.add_command(history_command)
cli.add_command(rollout_command)
for command in (
    deploy_command,
    status_command,
    promote_command,
    rollback_command,
    delete_command,
):
    cli.add_command(command)


def main() -> None:
    """Console script entry point."""
    cli(prog_name="zeroserve")
