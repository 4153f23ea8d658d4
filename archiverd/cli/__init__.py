"""Command line: `archiverd COMMAND`. One module per command; errors become exit codes here only."""
from __future__ import annotations

import importlib
import sys
import traceback

import click

from .. import config, memory
from ..crypto import keyring
from ..crypto.keyring import Keyring
from ..errors import ArchiverdError, ConfigError
from ..format import encryption
from ..redaction import redact

# click >= 8.2 raises this for a group named without its command (`archiverd`, `archiverd key`);
# click 8.1 printed the help and exited 0 instead
_NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())

# command name -> (module, attribute): a command's module, and what it imports (numpy, PyAV, pymongo...),
# is loaded only when that command runs, which halves the start-up of every command (`--help` loads all)
_COMMANDS = {name: (f"{name}_cmd", "command") for name in (
    "run", "status", "config", "list", "info", "restore", "verify", "check", "reindex", "export", "get", "find",
    "search", "catalog", "logs", "key", "prune", "hold", "erase")}
_COMMANDS["inspect"] = ("info_cmd", "alias")  # the first name of `info`, hidden, kept for scripts


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archiverd")
def cli() -> None:
    """Archive expired MongoDB documents into verified, lossless QR-video segments.

    Exit codes: 0 ok, 1 warning, 2 error, 3 bad configuration or usage, 4 damaged or foreign
    segment, 5 storage error, 6 database error, 7 a removal the object store refused.
    """


def _keyring_from_environment() -> Keyring | None:
    """For commands without configuration flags (verify, inspect, reindex): the key file the
    environment or $ARCHIVERD_CONFIG names, read only if an encrypted segment is met."""
    return keyring.from_config(config.load())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command and turn every expected failure into one line and an exit code."""
    memory.bound_arenas()  # before any thread starts
    encryption.use_keyring(_keyring_from_environment)
    try:
        code = cli.main(args=argv, prog_name="archiverd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except _NO_COMMAND as exc:  # the group's help, not an "error: Usage: <the whole help> -- Usage: ..." line
        click.echo(exc.ctx.get_help(), err=True)
        code = ConfigError.exit_code
    except click.ClickException as exc:  # one line, like every other error; a mistyped --uri is redacted
        usage = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            usage = f" -- Usage: {exc.ctx.command_path} {' '.join(exc.ctx.command.collect_usage_pieces(exc.ctx))}"
        click.echo(redact(f"archiverd: error: {exc.format_message()}{usage}"), err=True)
        code = ConfigError.exit_code
    except click.exceptions.Abort:
        click.echo("archiverd: aborted", err=True)
        code = 130
    except ArchiverdError as exc:
        click.echo(f"archiverd: error: {redact(str(exc))}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("archiverd: interrupted", err=True)
        code = 130
    except Exception as exc:  # noqa: BLE001 - a bug: one redacted line, never a traceback with a URI in it
        where = traceback.extract_tb(exc.__traceback__)[-1]
        click.echo(redact(f"archiverd: internal error: {exc.__class__.__name__}: {exc} (at {where.filename}:"
                          f"{where.lineno}); please report it"), err=True)
        code = ArchiverdError.exit_code
    sys.exit(code or 0)
