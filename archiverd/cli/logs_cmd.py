"""`archiverd logs`: print (and follow) the daemon's log file."""
from __future__ import annotations

import click

from ..config import Config
from ..errors import ConfigError
from ._common import with_config


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they are written.")
@with_config
def command(cfg: Config, follow: bool) -> int:
    """Print the log file set by ARCHIVERD_LOG_FILE (under systemd, also `journalctl -u archiverd`).

    \b
    Examples:
      archiverd logs -f
    """
    if cfg.log_file is None:
        raise ConfigError("no log file configured (set ARCHIVERD_LOG_FILE or log_file in the config file)")
    path = cfg.log_file
    position = 0
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as f:
            click.echo(f.read(), nl=False)
            position = f.tell()
    if not follow:
        return 0
    from watchfiles import watch

    try:
        for _ in watch(path.parent, recursive=False):
            if not path.exists():
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                if path.stat().st_size < position:  # rotated or truncated
                    position = 0
                f.seek(position)
                click.echo(f.read(), nl=False)
                position = f.tell()
    except KeyboardInterrupt:
        pass
    return 0
