"""What the daemon-side commands share: `--config`, loading the configuration, logging."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from .. import config, log


def with_config(fn: Callable[..., int]) -> Callable[..., int]:
    """Adds --config and passes a loaded, validated `cfg` (logging configured from it)."""
    @click.option("--config", "config_file", type=click.Path(path_type=Path),
                  help="TOML config file (also $ARCHIVERD_CONFIG). Environment variables override it.")
    @functools.wraps(fn)
    def wrapper(*args: Any, config_file: Path | None, **kwargs: Any) -> int:
        cfg = config.load(config_file)
        log.setup(cfg.log_format, cfg.log_file)
        return fn(*args, cfg=cfg, **kwargs)

    return wrapper
