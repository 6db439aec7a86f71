"""The ``consentry`` command: parse, call a service, print. Errors map to exit codes here.

Exit codes (the contract in the guide): 0 success (a check that denies is a success), 1 bad
input or usage (one line on stderr naming the problem), 2 internal error.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Sequence

import click

# Before any command's module loads numpy (nothing above does): one BLAS thread per process
# unless the user set another count (see the module). Every command that fingerprints or
# matches pictures — match, check, work register, gate, serve — multiplies small matrices,
# and OpenBLAS's threads spinning between them doubled the CPU time of image matching for a
# few per cent of wall clock (a 21,076-work replay: 47 against 20 ms of CPU a query).
import consentry.gate.blas  # noqa: F401
from consentry import __version__
from consentry.cli.context import AppContext, pass_app
from consentry.cli.lazy import LazyGroup
from consentry.cli.output import Out, json_option
from consentry.errors import ConsentryError

__all__ = ["cli", "main"]

# Each command's module is imported only when that command runs (or help lists it): the
# registry, the gate, the web service and the recognisers pull in SQLAlchemy, Alembic, pyarrow,
# numpy, OpenCV, FastAPI… and a `consentry gate` should not pay for `consentry serve`'s imports.
COMMANDS = {
    "party": "consentry.cli.parties:party",
    "work": "consentry.cli.works:work",
    "grant": "consentry.cli.grants:grant",
    "reserve": "consentry.cli.disputes:reserve",
    "dispute": "consentry.cli.disputes:dispute",
    "status": "consentry.cli.checks:status",
    "check": "consentry.cli.checks:check",
    "match": "consentry.cli.checks:match",
    "snapshot": "consentry.cli.gate:snapshot",
    "gate": "consentry.cli.gate:gate",
    "demo": "consentry.cli.demo:demo",
    "ledger": "consentry.cli.ledger:ledger",
    "receipt": "consentry.cli.ledger:receipt",
    "audit": "consentry.cli.audit:audit",
    "key": "consentry.cli.audit:key",
    # public statements (consentry.statements) and the web service (consentry.web)
    "statement": "consentry.cli.statements:statement",
    "operator": "consentry.cli.operators:operator",
    "mail": "consentry.cli.mail:mail",
    "serve": "consentry.cli.serve:serve",
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
    from consentry.ledger.log import init_log

    db = app.database(check=False)
    revision = db.migrate()
    log = init_log(db, app.settings)  # the log's origin and the operator key, chosen once
    obj = {"home": str(app.settings.home), "database": db.location, "schema": revision}
    obj |= {"log_origin": log.origin, "operator_vkey": log.operator_vkey}
    Out(as_json).emit(obj, f"registry ready at {db.location} (schema {revision})")


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
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            return _internal_error(exc)
        # The machine, not Consentry or the input: a full disk, a read-only mount, missing
        # permissions. Say which file and what, like any other bad-input error.
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 1
    except Exception as exc:  # the last line of defence: any bug becomes exit 2
        return _internal_error(exc)
    return 0


# OSErrors that describe the machine (space, permissions, mounts, limits), reported as
# errors of the run (exit 1) rather than as Consentry bugs (exit 2).
_ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENAMETOOLONG,
    }
)


def _internal_error(exc: BaseException) -> int:
    if os.environ.get("CONSENTRY_DEBUG"):
        traceback.print_exc()
    click.echo(
        f"internal error: {type(exc).__name__}: {exc} (set CONSENTRY_DEBUG=1 for a trace)",
        err=True,
    )
    return 2


def run() -> None:
    sys.exit(main())
