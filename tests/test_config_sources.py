"""Where settings come from: flags > environment > config file (TOML or the unit's env file) > defaults,
shown by `archiverd config`; and every configuration mistake is one line and exit code 3."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archiverd import config
from archiverd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    proc = subprocess.run([sys.executable, "-m", "archiverd", *args], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def settings(*args: str, **kw) -> dict[str, dict[str, object]]:
    proc = cli("config", "--json", *args, **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["settings"]


def test_the_units_environment_file_is_a_config_file(tmp_path):
    env_file = tmp_path / "archiverd.env"
    # as systemd reads it: comments, quotes, a '#' inside a value, `export`, unrelated variables
    env_file.write_text("# archiverd\n"
                        "MONGODB_URI=mongodb://archiverd:pa#ss@db1:27017/?replicaSet=rs0\n"
                        "MONGODB_DATABASE_NAME=\"evolving_agents_db\"\n"
                        "; another comment\n"
                        "ARCHIVE_THRESHOLD_DAYS=30\n"
                        "export ARCHIVERD_COLLECTION='agent_runs'\n"
                        "ARCHIVERD_ARCHIVE_DIR=/var/lib/archiverd/archives\n"
                        "ARCHIVERD_LOG_FORMAT = json\n"
                        "PYTHONUNBUFFERED=1\n")
    got = settings("--config", str(env_file))
    assert got["uri"] == {"value": "mongodb://archiverd:***@db1:27017/?replicaSet=rs0",
                          "from": f"file {env_file} (MONGODB_URI)"}
    assert got["collection"]["value"] == "agent_runs" and got["threshold_days"]["value"] == 30.0
    assert got["database"]["value"] == "evolving_agents_db" and got["log_format"]["value"] == "json"
    assert got["batch_size"] == {"value": 200, "from": "default"}
    # the service's view and the person's view are the same file
    loaded = config.load(env_file, environ={})
    assert loaded.uri == "mongodb://archiverd:pa#ss@db1:27017/?replicaSet=rs0" and loaded.collection == "agent_runs"


def test_the_shipped_env_example_loads(tmp_path):
    cfg = config.load(ROOT / "systemd" / "archiverd.env.example", environ={})
    assert cfg.archive_dir == Path("/var/lib/archiverd/archives") and cfg.log_file is None
    assert cfg.origins["uri"].endswith("(MONGODB_URI)")


def test_precedence_flags_environment_file_defaults(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('collection = "from_file"\ndate_field = "created"\nthreshold_days = 30\ndatabase = "filedb"\n')
    env = {"ARCHIVERD_COLLECTION": "from_env", "ARCHIVE_THRESHOLD_DAYS": "45"}
    got = settings("--config", str(toml), "--collection", "from_flag", env=env)
    assert got["collection"] == {"value": "from_flag", "from": "flag --collection"}
    assert got["threshold_days"] == {"value": 45.0, "from": "environment ARCHIVE_THRESHOLD_DAYS"}
    assert got["date_field"] == {"value": "created", "from": f"file {toml}"}
    assert got["lease_seconds"] == {"value": 60.0, "from": "default"}
    got = settings("--config", str(toml), "--db", "flagdb", "--older-than", "36h", "--date-field", "ts",
                   "--uri", "mongodb://h2/", env={**env, "ARCHIVERD_CONFIG": "/nonexistent"})
    assert got["database"]["value"] == "flagdb" and got["threshold_days"]["value"] == 1.5
    assert got["date_field"]["value"] == "ts" and got["uri"] == {"value": "mongodb://h2/", "from": "flag --uri"}
    assert settings(env={"ARCHIVERD_CONFIG": str(toml)})["collection"]["value"] == "from_file"


def test_a_relative_archive_dir_flag_means_the_current_directory(tmp_path):
    got = settings("--archive-dir", "here/archives", cwd=tmp_path)
    assert got["archive_dir"] == {"value": str(tmp_path / "here" / "archives"), "from": "flag --archive-dir"}


def test_config_prints_a_table_without_secrets():
    proc = cli("config", env={"MONGODB_URI": "mongodb://u:T4ble9secret@h/?proxyPassword=Pr0xy9secret"})
    assert proc.returncode == 0
    assert "T4ble9secret" not in proc.stdout and "Pr0xy9secret" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["setting", "value", "from"]
    assert any(line.split()[:1] == ["uri"] and line.endswith("environment MONGODB_URI") for line in lines)
    assert len(lines) == 1 + len(config.SETTINGS)


@pytest.mark.parametrize("text, days", [("90d", 90), ("90", 90), ("36h", 1.5), ("2w", 14), ("1.5d", 1.5),
                                        ("720m", 0.5), ("86400s", 1), ("3 days", 3)])
def test_durations(text, days):
    assert config.parse_duration(text, default_unit="d") == dt.timedelta(days=days)


def _long_name() -> str:
    return "c" * 300


# every mistake a person can type into a setting: (flags, environment, what the message says)
BAD = [
    (["--older-than", "inf"], {}, "not a duration"),
    (["--older-than", "1e400d"], {}, "not a duration"),
    (["--older-than", "99999999d"], {}, "too long"),
    (["--older-than", "-5d"], {}, "not a duration"),
    (["--older-than", "ninety days"], {}, "not a duration"),
    (["--older-than", "0d"], {}, "threshold_days must be positive"),
    ([], {"ARCHIVE_THRESHOLD_DAYS": "inf"}, "threshold_days must be positive and at most 36500"),
    ([], {"ARCHIVE_THRESHOLD_DAYS": "nan"}, "threshold_days must be positive"),
    ([], {"ARCHIVE_THRESHOLD_DAYS": "1e308"}, "at most 36500"),
    ([], {"ARCHIVE_THRESHOLD_DAYS": "1e999"}, "threshold_days must be positive"),
    ([], {"ARCHIVE_THRESHOLD_DAYS": "ninety"}, "must be a number"),
    ([], {"ARCHIVERD_BATCH_SIZE": "-1"}, "batch_size must be positive"),
    ([], {"ARCHIVERD_BATCH_SIZE": "1e9"}, "batch_size must be an integer"),
    ([], {"ARCHIVERD_BATCH_SIZE": "10000000"}, "batch_size must be between 1 and 100000"),
    ([], {"ARCHIVERD_SEGMENT_MAX_DOCS": "-1"}, "segment_max_docs must not be negative"),
    ([], {"ARCHIVERD_PARITY_PERCENT": "101"}, "parity_percent must be between 0 and 100"),
    ([], {"ARCHIVERD_DAY_GRACE_SECONDS": "-5"}, "day_grace_seconds must not be negative"),
    ([], {"ARCHIVERD_POLL_SECONDS": "inf"}, "poll_seconds must be a finite number"),
    ([], {"ARCHIVERD_RETRY_SECONDS": "-3"}, "retry_seconds must not be negative"),
    ([], {"ARCHIVERD_SERVER_TIMEOUT_MS": "2.5"}, "must be an integer"),
    ([], {"ARCHIVERD_LEASE_SECONDS": "1"}, "lease_seconds must be between 3"),
    ([], {"ARCHIVERD_ARCHIVE_DIR": "archives"}, "archive_dir must be an absolute path"),
    ([], {"ARCHIVERD_LOG_FILE": "logs/a.log"}, "log_file must be an absolute path"),
    ([], {"ARCHIVERD_GROUP_ACCESS": "maybe"}, "group_access must be true or false"),
    ([], {"ARCHIVERD_METRICS_ADDR": "localhost:http"}, "metrics_addr must be HOST:PORT"),
    ([], {"ARCHIVERD_METRICS_ADDR": "127.0.0.1:70000"}, "metrics_addr must be HOST:PORT"),
    ([], {"ARCHIVERD_METRICS_TEXTFILE": "/tmp/archiverd.txt"}, "must end in .prom"),
    ([], {"ARCHIVERD_LOG_FORMAT": "xml"}, "log_format must be 'logfmt' or 'json'"),
    ([], {"ARCHIVERD_COLECTION": "typo"}, "unknown environment variable ARCHIVERD_COLECTION"),
    (["--uri", "localhost:27017"], {}, "must start with mongodb://"),
    (["--uri", "http://u:Http9secret@h/"], {}, "must start with mongodb://"),
    (["--uri", "mongodb://h:notaport/"], {}, "is not usable"),
    (["--uri", "mongodb://"], {}, "is not usable"),
    (["--db", "a/b"], {}, "not a valid MongoDB database name"),
    (["--db", ""], {}, "not a valid MongoDB database name"),
    (["--db", "x" * 64], {}, "not a valid MongoDB database name"),
    (["--collection", ""], {}, "not a valid collection name"),
    (["--collection", "system.users"], {}, "not a valid collection name"),
    (["--collection", "a$b"], {}, "not a valid collection name"),
    (["--collection", _long_name()], {}, "not a valid collection name"),
    (["--date-field", "$ts"], {}, "not a valid field path"),
    (["--date-field", "a..b"], {}, "not a valid field path"),
    (["--date-field", ""], {}, "not a valid field path"),
]


def one_error_line(stderr: str) -> bool:
    return len([line for line in stderr.splitlines() if not line.startswith("archiverd: warning:")]) == 1


@pytest.mark.parametrize("flags, env, message", BAD)
def test_configuration_mistakes_are_one_line_and_exit_3(flags, env, message, tmp_path):
    proc = cli("config", "--check", *flags, env={"ARCHIVERD_ARCHIVE_DIR": str(tmp_path), **env})
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    if "is not usable" in message:  # the settings are valid; connecting with them is the failed check
        assert "check mongodb: FAILED: uri " in proc.stdout and message in proc.stdout, proc.stdout
        assert "(from flag --uri)" in proc.stdout, proc.stdout  # where the bad value came from, as for every setting
        return
    assert message in proc.stderr and one_error_line(proc.stderr), proc.stderr
    assert "Http9secret" not in proc.stderr + proc.stdout


def test_config_file_mistakes(tmp_path):
    cases = {
        "a directory": (tmp_path, "is a directory"),
        "missing": (tmp_path / "absent.env", "does not exist"),
        "binary": (tmp_path / "bin.toml", "not a text file"),
        "bad TOML": (tmp_path / "bad.toml", "not valid TOML"),
        "garbage line": (tmp_path / "bad.env", "expected NAME=VALUE"),
        "unknown TOML key": (tmp_path / "typo.toml", "unknown setting 'colection'"),
        "unknown env name": (tmp_path / "typo.env", "unknown setting ARCHIVERD_COLECTION"),
        "relative path": (tmp_path / "rel.env", "archive_dir must be an absolute path"),
        "nested config": (tmp_path / "nested.env", "ARCHIVERD_CONFIG cannot be set inside a config file"),
    }
    (tmp_path / "bin.toml").write_bytes(b"\x00\xff\xfe binary")
    (tmp_path / "bad.toml").write_text("collection = \n")
    (tmp_path / "bad.env").write_text("MONGODB_URI=mongodb://h/\nthis is not a setting\n")
    (tmp_path / "typo.toml").write_text('colection = "x"\n')
    (tmp_path / "typo.env").write_text("ARCHIVERD_COLECTION=x\n")
    (tmp_path / "rel.env").write_text("ARCHIVERD_ARCHIVE_DIR=archives\n")
    (tmp_path / "nested.env").write_text("ARCHIVERD_CONFIG=/etc/other.env\n")
    for what, (path, message) in cases.items():
        proc = cli("config", "--config", str(path))
        assert proc.returncode == 3, (what, proc.stderr)
        assert message in proc.stderr and one_error_line(proc.stderr), (what, proc.stderr)
    empty = cli("config", "--config", "/dev/null")  # an empty file: the defaults
    assert empty.returncode == 0 and "default" in empty.stdout


def test_restore_to_mistakes(tmp_path):
    segment = tmp_path / "part-0001.mkv"
    for to, message in [("nodot", "must name DB.COLLECTION"), (".c", "must name DB.COLLECTION"),
                        ("d.", "must name DB.COLLECTION"), ("a b.c", "not a valid MongoDB database name"),
                        ("d$x.c", "not a valid MongoDB database name"), ("d.system.js", "not a valid collection"),
                        ("d.c$", "not a valid collection name"), ("mongodb://h", "names no DB.COLLECTION"),
                        ("mongodb://h/?replicaSet=rs0", "must name DB.COLLECTION"),
                        ("mongodb://u:To9secret@h/bad/db.c", "not a valid MongoDB database name")]:
        proc = cli("restore", str(segment), "--to", to)
        assert proc.returncode == 3, (to, proc.stderr)
        assert message in proc.stderr and "To9secret" not in proc.stderr, (to, proc.stderr)


def test_restore_to_keeps_the_uri_options():
    from archiverd.cli.restore_cmd import _target
    base = config.load(environ={"MONGODB_URI": "mongodb://source/"})
    t = _target(base, "mongodb://u:p%40w@h1:27017,h2:27018/scratch.check?replicaSet=rs0&tls=true&authSource=admin")
    assert (t.uri, t.database, t.collection) == (
        "mongodb://u:p%40w@h1:27017,h2:27018/?replicaSet=rs0&tls=true&authSource=admin", "scratch", "check")
    t = _target(base, "scratch.a.b")
    assert (t.uri, t.database, t.collection) == ("mongodb://source/", "scratch", "a.b")


def test_the_python_api_rejects_relative_paths_from_files_but_not_from_flags(tmp_path):
    with pytest.raises(ConfigError, match="absolute path"):
        config.load(environ={"ARCHIVERD_ARCHIVE_DIR": "rel"})
    cfg = config.load(environ={}, overrides={"archive_dir": "rel"})
    assert cfg.archive_dir == Path.cwd() / "rel"
