"""Configuration: flags > environment > config file > defaults; every value knows where it came from.

The first user's names are kept (MONGODB_URI, MONGODB_DATABASE_NAME, ARCHIVE_THRESHOLD_DAYS); every
other setting is ARCHIVERD_<NAME>. The config file (`--config FILE` or $ARCHIVERD_CONFIG) is either
TOML with the short lower-case names (`collection = "eat_agent_experiences"`) or the systemd unit's
environment file (`ARCHIVERD_COLLECTION=eat_agent_experiences`), so `archiverd status --config
/etc/archiverd/archiverd.env` by hand sees exactly what the service sees. Unknown keys -- in the file
or as ARCHIVERD_* variables -- are errors: a misspelt setting that silently keeps its default is how
archives end up somewhere nobody looks. Paths from the environment or a file must be absolute (a
service and a person in another directory would read a relative one differently); a path typed as a
flag is taken relative to the current directory, as in every shell command.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import redaction
from .errors import ConfigError
from .format.workers import MAX_WORKERS, cores
from .redaction import redact

__all__ = ["Config", "load", "redact", "env_name", "parse_duration", "parse_listen", "describe", "SETTINGS"]

_ENV_ALIASES = {"uri": "MONGODB_URI", "database": "MONGODB_DATABASE_NAME", "threshold_days": "ARCHIVE_THRESHOLD_DAYS"}
_DB_NAME = re.compile(r'^[^/\\. "$*<>:|?\x00]{1,63}$')
_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
          "w": 604800, "week": 604800, "weeks": 604800}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
MAX_THRESHOLD_DAYS = 36_500  # 100 years: beyond that the watermark is before any BSON date anyone stores


@dataclass(frozen=True)
class Config:
    uri: str = "mongodb://localhost:27017"
    database: str = "evolving_agents_db"
    collection: str = "eat_agent_experiences"
    date_field: str = "timestamp"
    threshold_days: float = 90.0
    archive_dir: Path = Path("/var/lib/archiverd/archives")
    # s3://bucket/prefix: sealed files go to this S3-API store; archive_dir then holds only state and staging
    archive_url: str | None = None
    batch_size: int = 200  # documents per read batch and per delete transaction
    batch_bytes: int = 16 << 20  # BSON bytes per delete transaction (it re-reads its documents)
    # a part is sealed after this many documents (0: a day is one segment, however large): the
    # seal holds ~4.5 KB per document (index entries, vector codes), so this bounds its memory
    segment_max_docs: int = 10_000
    day_grace_seconds: float = 300.0  # a day is archived once the watermark has passed its end by this
    block_bytes: int = 4 << 20
    parity_percent: float = 5.0  # Reed–Solomon parity frames, as a percentage of the data frames
    index_fields: str = "experience_id"  # comma-separated fields the catalog can look documents up by
    throttle_seconds: float = 0.0  # pause between batches, to spare a busy primary
    poll_seconds: float = 60.0  # longest sleep between cycles (and the interval without change streams)
    lease_seconds: float = 60.0
    shared_backlog: bool = False  # several processes share the backlog, a UTC day each; False: one active instance
    retry_seconds: float = 120.0  # give up on a transient error after this long (the daemon's start: never)
    server_timeout_ms: int = 10_000
    log_format: str = "logfmt"
    log_file: Path | None = None
    group_access: bool = False  # archive, state and log files 0640 / directories 0750 instead of 0600 / 0700
    metrics_addr: str | None = None  # HOST:PORT for a Prometheus scrape endpoint (the daemon only)
    metrics_textfile: Path | None = None  # or a file for node_exporter's textfile collector
    encryption_key_file: Path | None = None  # the master key file (`archiverd key init`); None: encryption off
    retention_days: int = 0  # prune day segments whose day ended this many days ago; 0: keep forever
    workers: int = field(default_factory=cores)  # processes for the CPU stages (format/workers.py)
    config_file: Path | None = field(default=None, compare=False)
    # not settings: how the command line uses this configuration
    fail_fast: bool = field(default=False, compare=False)  # a person is waiting: no retries, short timeouts
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

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

    @property
    def indexed(self) -> tuple[str, ...]:
        """The fields of `index_fields`, as a tuple."""
        return tuple(f.strip() for f in self.index_fields.split(",") if f.strip())

    @property
    def file_mode(self) -> int:
        """Mode for every file archiverd creates (archives, state, log)."""
        return 0o640 if self.group_access else 0o600

    @property
    def dir_mode(self) -> int:
        return 0o750 if self.group_access else 0o700


_INTERNAL = ("config_file", "fail_fast", "origins")
SETTINGS = {f.name: f for f in dataclasses.fields(Config) if f.name not in _INTERNAL}
_PATHS = {"archive_dir", "log_file", "metrics_textfile", "encryption_key_file"}
# (lowest, highest) accepted; every number must also be finite
_RANGES: dict[str, tuple[float, float]] = {
    "batch_size": (1, 100_000), "segment_max_docs": (0, 10_000_000), "block_bytes": (1024, 16 << 20),
    "batch_bytes": (1 << 16, 1 << 30), "day_grace_seconds": (0, 86_400), "parity_percent": (0, 100),
    "throttle_seconds": (0, 3600), "poll_seconds": (0.01, 86_400), "lease_seconds": (3, 86_400),
    "retry_seconds": (0, 7 * 86_400), "server_timeout_ms": (1, 600_000), "retention_days": (0, MAX_THRESHOLD_DAYS),
    "workers": (1, MAX_WORKERS),
}


def env_name(key: str) -> str:
    return _ENV_ALIASES.get(key, f"ARCHIVERD_{key.upper()}")


def parse_duration(text: str, default_unit: str | None = None) -> dt.timedelta:
    """'90d', '36h', '1.5w', '30m', '45s' (and '90' when a default unit is given) as a timedelta."""
    m = _DURATION.match(str(text))
    unit = (m.group(2).lower() or default_unit) if m else None
    if m is None or unit not in _UNITS:
        units = "s, m, h, d or w"
        raise ConfigError(f"{text!r} is not a duration (a number and a unit: {units}; for example 90d)")
    seconds = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(seconds) or seconds > MAX_THRESHOLD_DAYS * 86400:
        raise ConfigError(f"{text!r} is too long (at most {MAX_THRESHOLD_DAYS} days)")
    return dt.timedelta(seconds=seconds)


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[::1]:PORT', ':PORT' or 'PORT' as (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics_addr must be HOST:PORT with a port from 1 to 65535 (got {text!r})")
    return host, int(port)


def _convert(key: str, value: Any, origin: str) -> Any:
    kind = SETTINGS[key].type
    name = kind.split()[0]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError
            return text in _TRUE
        if isinstance(value, bool):  # TOML true for a number or a string is a mistake, not 1
            raise ValueError
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if isinstance(value, (int, float)) else int(str(value).strip())
        if kind == "float":
            return float(value)
        if key in _PATHS:
            text = str(value).strip()
            if not text and kind.endswith("None"):
                return None
            if "\x00" in text or not text:
                raise ValueError
            path = Path(text).expanduser()
            if not path.is_absolute():
                if not origin.startswith(("flag", "command line")):
                    raise ConfigError(f"{origin}: {key} must be an absolute path (got {text!r}); a service and a "
                                      "person in another directory would read a relative one differently")
                path = Path.cwd() / path
            return path
        if kind == "str | None":
            return str(value) if str(value).strip() else None
        return str(value)
    except (TypeError, ValueError, OverflowError):
        kind_name = {"int": "an integer", "float": "a number", "bool": "true or false", "Path": "a path",
                     "Path | None": "a path"}.get(kind, f"a {name}")
        shown = redact(str(value)) if key == "uri" else str(value)
        raise ConfigError(f"{origin}: {key} must be {kind_name}, got {shown!r}") from None


def _validate(cfg: Config) -> Config:
    def bad(key: str, message: str) -> ConfigError:
        return ConfigError(f"{key} {message} (from {cfg.origins.get(key, 'default')})")

    t = cfg.threshold_days
    if not math.isfinite(t) or not 0 < t <= MAX_THRESHOLD_DAYS:
        raise bad("threshold_days", f"must be positive and at most {MAX_THRESHOLD_DAYS} days (got {t})")
    for key, (low, high) in _RANGES.items():
        value = getattr(cfg, key)
        if not math.isfinite(value):
            raise bad(key, f"must be a finite number (got {value})")
        if value <= 0 < low:
            raise bad(key, f"must be positive (got {value:g})")
        if value < 0 == low:
            raise bad(key, f"must not be negative (got {value:g})")
        if not low <= value <= high:
            raise bad(key, f"must be between {low:g} and {high:g} (got {value:g})")
    if cfg.retention_days and cfg.retention_days <= t:
        raise bad("retention_days", f"must be 0 (keep forever) or more than threshold_days ({t:g}): it counts "
                                    "from the documents' day, like the threshold, so a shorter one would prune "
                                    f"what was just archived (got {cfg.retention_days})")
    if cfg.log_format not in ("logfmt", "json"):
        raise bad("log_format", f"must be 'logfmt' or 'json' (got {cfg.log_format!r})")
    if not _DB_NAME.match(cfg.database):
        raise bad("database", f"{cfg.database!r} is not a valid MongoDB database name")
    check_collection_name(cfg.collection, f"collection {cfg.collection!r} (from "
                                          f"{cfg.origins.get('collection', 'default')})")
    parts = cfg.date_field.split(".")
    if not cfg.date_field or any(not p or p.startswith("$") or "\x00" in p for p in parts):
        raise bad("date_field", f"{cfg.date_field!r} is not a valid field path")
    for name in cfg.indexed:
        if any(not p or p.startswith("$") or "\x00" in p for p in name.split(".")):
            raise bad("index_fields", f"{name!r} is not a valid field path")
    if not cfg.uri.startswith(("mongodb://", "mongodb+srv://")):
        scheme = cfg.uri.split("://", 1)[0] + "://..." if "://" in cfg.uri else "no scheme"
        raise bad("uri", f"must start with mongodb:// or mongodb+srv:// (got {scheme!r})")
    if cfg.metrics_addr is not None:
        parse_listen(cfg.metrics_addr)
    if cfg.archive_url is not None:
        from .store.objects import parse_url
        try:
            parse_url(cfg.archive_url)
        except ConfigError as exc:
            raise bad("archive_url", f"is not usable: {exc}") from None
    if cfg.metrics_textfile is not None and cfg.metrics_textfile.suffix != ".prom":
        raise bad("metrics_textfile", "must end in .prom (node_exporter's textfile collector reads only those)")
    return cfg


def check_collection_name(name: str, what: str) -> None:
    """A collection name MongoDB accepts and that is not a system collection."""
    if not name or "$" in name or "\x00" in name or name.startswith(("system.", ".")) or name.endswith(".") \
            or len(name.encode()) > 255:
        raise ConfigError(f"{what} is not a valid collection name")


def check_database_name(name: str, what: str) -> None:
    if not _DB_NAME.match(name):
        raise ConfigError(f"{what} is not a valid MongoDB database name")


def _read_file(path: Path) -> dict[str, tuple[Any, str]]:
    """Settings from a TOML or an environment file, as key -> (value, origin)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise ConfigError(f"config file {path} is not a text file")
    first = next((line.strip() for line in text.splitlines()
                  if line.strip() and not line.strip().startswith(("#", ";"))), "")
    is_env = bool(re.match(r"^(?:export\s+)?[A-Z][A-Z0-9_]*\s*=", first))
    return _read_env_file(path, text) if is_env else _read_toml(path, text)


def _read_toml(path: Path, text: str) -> dict[str, tuple[Any, str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML (nor an environment file of NAME=VALUE lines): "
                          f"{exc}") from None
    out = {}
    for key, value in data.items():
        if key not in SETTINGS:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(SETTINGS))})")
        if key == "uri" and isinstance(value, str):
            redaction.remember(value)
        out[key] = (value, f"file {path}")
    return out


def parse_env_file(text: str, path: Path | str = "environment file") -> dict[str, str]:
    """NAME=VALUE lines as systemd's EnvironmentFile= reads them: # and ; start comment lines (a #
    later in a line is part of the value: passwords may hold one), values may be quoted, a trailing
    backslash continues the line, `export ` is tolerated."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        while stripped.endswith("\\") and i < len(lines) and not stripped.endswith("\\\\"):
            stripped = stripped[:-1] + lines[i].strip()
            i += 1
        m = _ENV_LINE.match(stripped)
        if m is None:
            raise ConfigError(f"{path}:{number}: expected NAME=VALUE, got {stripped[:40]!r}"
                              if "://" not in stripped else f"{path}:{number}: expected NAME=VALUE")
        name, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if m.group(2).strip()[0] == '"':
                value = re.sub(r'\\(["\\$`])', r"\1", value)
        out[name] = value
    return out


def _read_env_file(path: Path, text: str) -> dict[str, tuple[Any, str]]:
    known = {env_name(k): k for k in SETTINGS}
    out = {}
    for name, value in parse_env_file(text, path).items():
        if name == "ARCHIVERD_CONFIG":
            raise ConfigError(f"{path}: ARCHIVERD_CONFIG cannot be set inside a config file")
        if name.startswith("ARCHIVERD_") and name not in known:
            raise ConfigError(f"{path}: unknown setting {name} (known: {', '.join(sorted(known))})")
        if name in known:
            if name == "MONGODB_URI":
                redaction.remember(value)
            out[known[name]] = (value, f"file {path} ({name})")
    return out


RESERVED_ENV_PREFIX = "ARCHIVERD_TEST_"
"""Names under this prefix belong to test harnesses (the suite's server address); never a setting."""


def load(config_file: Path | None = None, environ: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None, flags: Mapping[str, str] | None = None) -> Config:
    """Build the configuration; every problem is a ConfigError naming the setting and its origin.
    `overrides` are command-line values; `flags` names the flag each came from (for `config`)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {}
    if config_file is None and environ.get("ARCHIVERD_CONFIG"):
        config_file = Path(environ["ARCHIVERD_CONFIG"])
    if config_file is not None:
        raw.update(_read_file(Path(config_file)))
    known_env = {env_name(k): k for k in SETTINGS} | {"ARCHIVERD_CONFIG": None}
    for name, value in environ.items():
        if name.startswith("ARCHIVERD_") and name not in known_env and not name.startswith(RESERVED_ENV_PREFIX):
            raise ConfigError(f"unknown environment variable {name}")
        key = known_env.get(name)
        if key is not None:
            if key == "uri":
                redaction.remember(value)
            raw[key] = (value, f"environment {name}")
    for key, value in (overrides or {}).items():
        if value is not None:
            if key == "uri":
                redaction.remember(str(value))
            raw[key] = (value, f"flag {(flags or {}).get(key, '--' + key.replace('_', '-'))}" if flags
                        else "command line")
    values = {key: _convert(key, value, origin) for key, (value, origin) in raw.items()}
    origins = {key: raw[key][1] if key in raw else "default" for key in SETTINGS}
    return _validate(Config(**values, config_file=config_file, origins=origins))


def describe(cfg: Config) -> list[tuple[str, Any, str]]:
    """(setting, value safe to print, where it came from) for every setting."""
    rows = []
    for key in SETTINGS:
        value = getattr(cfg, key)
        shown: Any = redact(value) if key == "uri" else (str(value) if isinstance(value, Path) else value)
        rows.append((key, shown, cfg.origins.get(key, "default")))
    return rows
