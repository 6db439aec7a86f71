"""The ``consentry`` command: parse, call a service, print. Errors map to exit codes here.

Exit codes (the contract in the guide): 0 success (a check that denies is a success), 1 bad
input or usage (one line on stderr naming the problem), 2 internal error.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from consentry import __version__
from consentry.cli.audit import audit, key
from consentry.cli.checks import check, match, status
from consentry.cli.context import AppContext, pass_app
from consentry.cli.demo import demo
from consentry.cli.disputes import dispute, reserve
from consentry.cli.gate import gate, snapshot
from consentry.cli.grants import grant
from consentry.cli.ledger import ledger, receipt
from consentry.cli.mail import mail
from consentry.cli.operators import operator
from consentry.cli.output import Out, json_option
from consentry.cli.parties import party
from consentry.cli.serve import serve
from consentry.cli.statements import statement
from consentry.cli.works import work
from consentry.errors import ConsentryError
from consentry.ledger.log import init_log

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Registry home (default: $CONSENTRY_HOME or ./.consentry).",
)
@click.version_option(__version__, prog_name="consentry")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Consentry: an opt-in consent registry for creative works and the gate that enforces it.

    Nothing may be used unless a grant agreed by every holder says so.
    """
    app = AppContext(home)
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@json_option
@pass_app
def init(app: AppContext, as_json: bool) -> None:
    """Create the registry (or upgrade its schema) in the home / database URL."""
    db = app.database(check=False)
    revision = db.migrate()
    log = init_log(db, app.settings)  # the log's origin and the operator key, chosen once
    obj = {"home": str(app.settings.home), "database": db.location, "schema": revision}
    obj |= {"log_origin": log.origin, "operator_vkey": log.operator_vkey}
    Out(as_json).emit(obj, f"registry ready at {db.location} (schema {revision})")


for command in (party, work, grant, reserve, dispute, status, check, match, snapshot, gate, demo):
    cli.add_command(command)
for command in (ledger, receipt, audit, key):
    cli.add_command(command)
for command in (statement, operator, mail):  # public statements (consentry.statements)
    cli.add_command(command)
cli.add_command(serve)  # the web service (consentry.web)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising (handy for tests)."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="consentry",
            standalone_mode=False,
        )
    except ConsentryError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        # One line naming the problem (the contract), not click's usage banner.
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 1
    except Exception as exc:  # the last line of defence: any bug becomes exit 2
        if os.environ.get("CONSENTRY_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (set CONSENTRY_DEBUG=1 for a trace)",
            err=True,
        )
        return 2
    return 0


def run() -> None:
    sys.exit(main())
