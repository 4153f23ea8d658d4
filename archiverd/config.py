"""Configuration: defaults < config file (TOML) < environment < command line.

The first user's names are kept (MONGODB_URI, MONGODB_DATABASE_NAME, ARCHIVE_THRESHOLD_DAYS); every
other setting is ARCHIVERD_<NAME>. In the config file the same settings use their short lower-case
names (`collection = "eat_agent_experiences"`). Unknown keys -- in the file or as ARCHIVERD_*
variables -- are errors, because a misspelt setting that silently keeps its default is how archives
end up somewhere nobody looks.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

_ENV_ALIASES = {"uri": "MONGODB_URI", "database": "MONGODB_DATABASE_NAME", "threshold_days": "ARCHIVE_THRESHOLD_DAYS"}
_DB_NAME = re.compile(r'^[^/\\. "$*<>:|?\x00]{1,63}$')


@dataclass(frozen=True)
class Config:
    uri: str = "mongodb://localhost:27017"
    database: str = "evolving_agents_db"
    collection: str = "eat_agent_experiences"
    date_field: str = "timestamp"
    threshold_days: float = 90.0
    archive_dir: Path = Path("archives")
    batch_size: int = 200  # documents per read batch and per delete transaction
    batch_bytes: int = 16 << 20  # BSON bytes per delete transaction (it re-reads its documents)
    segment_max_docs: int = 0  # 0: a day is one segment; else a part is sealed after this many documents
    day_grace_seconds: float = 300.0  # a day is archived once the watermark has passed its end by this
    block_bytes: int = 4 << 20
    parity_percent: float = 5.0  # Reed–Solomon parity frames, as a percentage of the data frames
    throttle_seconds: float = 0.0  # pause between batches, to spare a busy primary
    poll_seconds: float = 60.0  # longest sleep between cycles (and the interval without change streams)
    lease_seconds: float = 60.0
    retry_seconds: float = 120.0  # give up on a transient error after this long
    server_timeout_ms: int = 10_000
    log_format: str = "logfmt"
    log_file: Path | None = None
    config_file: Path | None = field(default=None, compare=False)

    @property
    def namespace(self) -> str:
        return f"{self.database}.{self.collection}"

    @property
    def collection_dir(self) -> Path:
        """Where this collection's segments live: <archive_dir>/<db>/<collection>/."""
        return self.archive_dir / self.database / self.collection

    @property
    def state_file(self) -> Path:
        return self.collection_dir / "archiverd-state.json"


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "config_file"}


def env_name(key: str) -> str:
    return _ENV_ALIASES.get(key, f"ARCHIVERD_{key.upper()}")


def _convert(key: str, value: Any, origin: str) -> Any:
    kind = _FIELDS[key].type
    try:
        if kind in ("int",):
            out: Any = int(value)
        elif kind in ("float",):
            out = float(value)
        elif kind in ("Path",):
            out = Path(str(value)).expanduser()
        elif kind in ("Path | None",):
            out = Path(str(value)).expanduser() if str(value) else None
        else:
            out = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {key} must be a {kind.split()[0]}, got {value!r}") from None
    return out


def _validate(cfg: Config) -> Config:
    if not cfg.threshold_days > 0:
        raise ConfigError(f"threshold_days must be positive (got {cfg.threshold_days})")
    if cfg.segment_max_docs < 0 or not 0 <= cfg.day_grace_seconds <= 86_400:
        raise ConfigError("segment_max_docs must not be negative and day_grace_seconds must be 0..86400")
    for key in ("batch_size", "batch_bytes", "block_bytes", "server_timeout_ms"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key} must be positive (got {getattr(cfg, key)})")
    if not 0 <= cfg.parity_percent <= 100:
        raise ConfigError(f"parity_percent must be between 0 and 100 (got {cfg.parity_percent})")
    for key in ("throttle_seconds", "retry_seconds"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must not be negative (got {getattr(cfg, key)})")
    if cfg.poll_seconds <= 0 or cfg.lease_seconds < 3:
        raise ConfigError("poll_seconds must be positive and lease_seconds at least 3")
    if cfg.log_format not in ("logfmt", "json"):
        raise ConfigError(f"log_format must be 'logfmt' or 'json' (got {cfg.log_format!r})")
    if not _DB_NAME.match(cfg.database):
        raise ConfigError(f"database {cfg.database!r} is not a valid MongoDB database name")
    if not cfg.collection or "$" in cfg.collection or "\x00" in cfg.collection or cfg.collection.startswith("system."):
        raise ConfigError(f"collection {cfg.collection!r} is not a valid collection name")
    if not cfg.date_field or cfg.date_field.startswith("$"):
        raise ConfigError(f"date_field {cfg.date_field!r} is not a valid field path")
    if not cfg.uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"MONGODB_URI must start with mongodb:// or mongodb+srv:// (got {redact(cfg.uri)!r})")
    return cfg


def load(config_file: Path | None = None, environ: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the configuration; every problem is a ConfigError naming the setting and its origin."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or (Path(environ["ARCHIVERD_CONFIG"]) if environ.get("ARCHIVERD_CONFIG") else None)
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {config_file} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{config_file}: unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})")
            values[key] = _convert(key, value, str(config_file))
    known_env = {env_name(k): k for k in _FIELDS} | {"ARCHIVERD_CONFIG": None}
    for name, value in environ.items():
        if name.startswith("ARCHIVERD_") and name not in known_env:
            raise ConfigError(f"unknown environment variable {name}")
        key = known_env.get(name)
        if key is not None:
            values[key] = _convert(key, value, f"environment {name}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _convert(key, value, "command line")
    return _validate(Config(**values, config_file=config_file))


def redact(uri: str) -> str:
    """A URI safe to log or print: the password (and any user info) replaced."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    if "@" not in parts.netloc:
        return uri
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    hosts = parts.netloc.rsplit("@", 1)[1]
    return uri.replace(parts.netloc, f"{user}:***@{hosts}", 1)
