"""Secrets are never printed: one redaction function, hostile URIs, every output searched for the secret.

Each hostile URI carries a secret (and, where the secret holds an @ or :, the part a naive parser
would show). The CLI runs against the real wire server (which refuses the credentials at once) or a
closed port, with the URI given as MONGODB_URI, as --uri, or in the unit's environment file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archiverd import config, log, redaction
from archiverd.errors import ArchiverdError
from archiverd.redaction import redact, secrets_in
from archiverd.service.source import Source

# (uri with {host} for the server, the strings that must never be printed)
HOSTILE = [
    ("mongodb://arch:Pa/ss9word@{host}/?directConnection=true", ["Pa/ss9word", "ss9word"]),
    ("mongodb://arch:Pa@ss9word@{host}/?directConnection=true", ["Pa@ss9word", "ss9word"]),
    ("mongodb://arch:Pa:ss9word@{host}/?directConnection=true", ["Pa:ss9word", "ss9word"]),
    ("mongodb://arch:Pa%2Fss9word@{host}/?directConnection=true", ["Pa%2Fss9word", "Pa/ss9word", "ss9word"]),
    ("mongodb://arch:Pa%40ss9word@{host}/?directConnection=true", ["Pa%40ss9word", "Pa@ss9word", "ss9word"]),
    ("mongodb://arch:Pa?ss9word@{host}/?directConnection=true", ["Pa?ss9word", "ss9word"]),
    ("mongodb://arch:Pa#ss9word@{host}/?directConnection=true", ["Pa#ss9word", "ss9word"]),
    ("mongodb://arch:P%C3%A4ssw%C3%B6rd9@{host}/?directConnection=true", ["P%C3%A4ssw%C3%B6rd9", "Pässwörd9"]),
    ("mongodb://arch:Pässwörd€9@{host}/?directConnection=true", ["Pässwörd€9"]),
    ("mongodb://{host}/?directConnection=true&tls=false&tlsCertificateKeyFilePassword=Kf9secret", ["Kf9secret"]),
    ("mongodb://{host}/?directConnection=true&sslClientCertificateKeyPassword=Ssl9secret", ["Ssl9secret"]),
    ("mongodb://{host}/?directConnection=true&authMechanism=MONGODB-AWS"
     "&authMechanismProperties=AWS_SESSION_TOKEN:Tok9secret", ["Tok9secret"]),
    ("mongodb://AKIAEXAMPLE:Aws9secret@{host}/?directConnection=true&authMechanism=MONGODB-AWS"
     "&authMechanismProperties=AWS_SESSION_TOKEN:Tok9secret,SERVICE_NAME:mongodb", ["Aws9secret", "Tok9secret"]),
    ("mongodb://{host}/?directConnection=true&proxyHost=127.0.0.1&proxyUsername=u&proxyPassword=Prx9@secret",
     ["Prx9@secret", "Prx9", "@secret"]),
    ("mongodb://arch:Multi9secret@{host},127.0.0.1:1/?replicaSet=rs0", ["Multi9secret"]),
    ("mongodb+srv://arch:Srv9secret@cluster0.example.invalid/?authSource=admin", ["Srv9secret"]),
    # do not parse
    ("mongodb://arch:Space9 secret@{host}/", ["Space9 secret", "Space9"]),
    ("mongodb://arch:Nohost9secret", ["Nohost9secret"]),
    ("mongodb://arch:Pa/ss9word@{host}/db?appname=a@b", ["Pa/ss9word", "ss9word"]),
    ("mongodb:/arch:Slash9secret@{host}/", ["Slash9secret"]),
    ("mongdb://arch:Typo9secret@{host}/", ["Typo9secret"]),
]


@pytest.fixture
def nothing_remembered(monkeypatch):
    """Structure alone must hide these: no secret remembered from an earlier test helps."""
    monkeypatch.setattr(redaction, "_known", set())
    monkeypatch.setattr(redaction, "_known_pattern", None)


@pytest.mark.parametrize("uri, secrets", HOSTILE)
def test_redact_hides_every_secret_of_a_hostile_uri(uri, secrets, nothing_remembered):
    text = redact(uri.format(host="db1.example.net:27017"))
    for secret in secrets:
        assert secret not in text, text
    assert "***" in text


def test_redact_keeps_what_is_not_secret(nothing_remembered):
    assert redact("mongodb://u:p%40ss@h1,h2/db?x=1") == "mongodb://u:***@h1,h2/db?x=1"
    assert redact("mongodb+srv://user:pw@cluster.example.net/") == "mongodb+srv://user:***@cluster.example.net/"
    assert redact("mongodb://h/") == "mongodb://h/"
    assert redact("mongodb://[::1]:27017,h2:27018/?replicaSet=rs0") == "mongodb://[::1]:27017,h2:27018/?replicaSet=rs0"
    aws = "mongodb://h/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:t0ken&tls=true"
    assert redact(aws) == "mongodb://h/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***&tls=true"
    assert redact("mongodb://h/?tlsCertificateKeyFilePassword=x1&tlsCertificateKeyFile=/etc/k.pem") == \
        "mongodb://h/?tlsCertificateKeyFilePassword=***&tlsCertificateKeyFile=/etc/k.pem"
    assert redact("no uri here: 42 documents") == "no uri here: 42 documents"


def test_uris_inside_free_text_and_remembered_secrets(nothing_remembered):
    text = "ServerSelectionTimeoutError: 'mongodb://u:Fr33text@h:1/x' failed (see mongodb://v:Other9@h2/)."
    assert redact(text) == "ServerSelectionTimeoutError: 'mongodb://u:***@h:1/x' failed (see mongodb://v:***@h2/)."
    # a driver message that quotes a secret without the URI around it: masked once remembered
    uri = "mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:Rem3mbered%2Ftok"
    assert secrets_in(uri) >= {"Rem3mbered%2Ftok", "Rem3mbered/tok"}
    redaction.remember(uri)
    assert redact("bad property value Rem3mbered/tok") == "bad property value ***"


def test_log_lines_are_redacted_whatever_the_caller_passes(tmp_path, nothing_remembered):
    redaction.remember('mongodb://u:Qu%22o%5Cte9@h/')  # the decoded password holds " and \
    for style in ("logfmt", "json"):
        path = tmp_path / f"{style}.log"
        log.setup(style, path)
        try:
            log.event("test.event", uri="mongodb://u:Plain9secret@h/", error=ValueError('auth failed: Qu"o\\te9'),
                      nested={"list": ["mongodb://u:Deep9secret@h/"]})
            logging.getLogger("py.warnings").warning("mongodb://u:Warn9secret@h/ looks odd")
        finally:
            log.setup()
        text = path.read_text()
        for secret in ("Plain9secret", "Deep9secret", "Warn9secret", "Qu\"o", "o\\te9", 'Qu\\"o'):
            assert secret not in text, (style, text)
        assert text.count("\n") == 2 and "event=python.warning" in text or '"python.warning"' in text
        if style == "json":
            assert [json.loads(line)["event"] for line in text.splitlines()] == ["test.event", "python.warning"]


@pytest.mark.filterwarnings("ignore:Unknown option:UserWarning")  # pymongo's, for the malformed ones
@pytest.mark.parametrize("uri, secrets", HOSTILE)
def test_driver_and_config_errors_never_carry_the_secret(uri, secrets, tmp_path, nothing_remembered):
    env = {"MONGODB_URI": uri.format(host="127.0.0.1:1"), "ARCHIVERD_ARCHIVE_DIR": str(tmp_path),
           "ARCHIVERD_SERVER_TIMEOUT_MS": "200"}
    try:
        cfg = dataclasses.replace(config.load(environ=env), fail_fast=True)
        Source(cfg).ping()
        message = "no error"
    except ArchiverdError as exc:
        message = str(exc)
    assert message != "no error"
    for secret in secrets:
        assert secret not in message, message


# --- through the command line --------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    env.update(extra)
    return env


def _how(i: int, uri: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The URI as MONGODB_URI, as --uri, or in the unit's environment file, by turns."""
    if i % 3 == 0:
        return [], {"MONGODB_URI": uri}
    if i % 3 == 1:
        return ["--uri", uri], {}
    env_file = tmp_path / "archiverd.env"
    env_file.write_text(f"# the unit's file\nMONGODB_URI={uri}\nARCHIVERD_COLLECTION=eat_agent_experiences\n")
    return ["--config", str(env_file)], {}


# one of each kind through the whole command line (every kind is checked against redact() above)
THROUGH_THE_CLI = [0, 1, 3, 7, 9, 12, 13, 15, 17, 19]


@pytest.mark.parametrize("i", THROUGH_THE_CLI)
def test_no_command_prints_the_secret(i, mongo_uri, tmp_path):
    uri_template, secrets = HOSTILE[i]
    host = mongo_uri.split("//", 1)[1].split("/", 1)[0]  # the real server: it refuses the credentials at once
    uri = uri_template.format(host=host)
    (tmp_path / "archives").mkdir()
    log_file = tmp_path / "archiverd.log"
    flags, extra = _how(THROUGH_THE_CLI.index(i), uri, tmp_path)
    env = _env(ARCHIVERD_ARCHIVE_DIR=str(tmp_path / "archives"), ARCHIVERD_LOG_FILE=str(log_file),
               ARCHIVERD_SERVER_TIMEOUT_MS="1500", ARCHIVERD_RETRY_SECONDS="1", **extra)
    commands = [["status"], ["status", "--json"], ["config", "--check"], ["config", "--json"], ["run", "--once"],
                ["run", "--dry-run"]]
    if uri.startswith("mongodb"):
        commands.append(["restore", str(tmp_path / "none.mkv"), "--to", uri.replace("/?", "/db.c?", 1)])
    procs = [subprocess.Popen([sys.executable, "-m", "archiverd", *c, *flags], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [p.communicate(timeout=60) for p in procs]
    texts = [t for pair in outputs for t in pair] + [log_file.read_text() if log_file.exists() else ""]
    for command, proc, (out, err) in zip(commands, procs, outputs):
        assert "Traceback" not in err, (command, err)
        assert proc.returncode in (0, 1, 3, 4, 6), (command, proc.returncode, err)
        assert out or err, command
    for secret in secrets:
        for text in texts:
            assert secret not in text and json.dumps(secret)[1:-1] not in text, (secret, text)
