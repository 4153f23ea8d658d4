from pathlib import Path

import pytest

from archiverd import config
from archiverd.errors import ConfigError


def test_defaults_follow_the_first_user():
    cfg = config.load(environ={})
    assert (cfg.database, cfg.collection, cfg.date_field, cfg.threshold_days) == \
        ("evolving_agents_db", "eat_agent_experiences", "timestamp", 90.0)
    assert cfg.archive_dir == Path("/var/lib/archiverd/archives")  # the unit's StateDirectory


def test_precedence_file_then_environment_then_command_line(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('collection = "from_file"\nthreshold_days = 30\ndate_field = "created"\n')
    cfg = config.load(f, environ={"ARCHIVERD_COLLECTION": "from_env", "ARCHIVE_THRESHOLD_DAYS": "45"})
    assert (cfg.collection, cfg.threshold_days, cfg.date_field) == ("from_env", 45.0, "created")
    cfg = config.load(f, environ={"ARCHIVERD_COLLECTION": "from_env"}, overrides={"collection": "cli"})
    assert cfg.collection == "cli"
    assert config.load(environ={"ARCHIVERD_CONFIG": str(f)}).collection == "from_file"


@pytest.mark.parametrize("env, message", [
    ({"ARCHIVE_THRESHOLD_DAYS": "0"}, "threshold_days must be positive"),
    ({"ARCHIVE_THRESHOLD_DAYS": "-5"}, "threshold_days must be positive"),
    ({"ARCHIVE_THRESHOLD_DAYS": "ninety"}, "must be a number"),
    ({"ARCHIVERD_COLECTION": "typo"}, "unknown environment variable ARCHIVERD_COLECTION"),
    ({"MONGODB_URI": "http://example"}, "must start with mongodb://"),
    ({"MONGODB_URI": "localhost:27017"}, "must start with mongodb://"),
    ({"MONGODB_DATABASE_NAME": "bad/name"}, "not a valid MongoDB database name"),
    ({"ARCHIVERD_COLLECTION": "a$b"}, "not a valid collection name"),
    ({"ARCHIVERD_DATE_FIELD": "$ts"}, "not a valid field path"),
    ({"ARCHIVERD_BATCH_SIZE": "0"}, "batch_size must be positive"),
    ({"ARCHIVERD_LOG_FORMAT": "xml"}, "log_format"),
])
def test_bad_settings_are_clear_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        config.load(environ=env)


def test_bad_config_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("collection = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad, environ={})
    bad.write_text('colection = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'colection'"):
        config.load(bad, environ={})


def test_redact_hides_passwords():
    assert config.redact("mongodb://u:p%40ss@h1,h2/db?x=1") == "mongodb://u:***@h1,h2/db?x=1"
    assert config.redact("mongodb+srv://user:pw@cluster.example.net/") == "mongodb+srv://user:***@cluster.example.net/"
    assert config.redact("mongodb://h/") == "mongodb://h/"
