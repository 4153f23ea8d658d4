"""Hostile URIs through this wave's outputs: status's health problems and lease lines, list, info, and
progress/statistics lines of run --once and restore. No secret may appear, whatever the server says."""
from __future__ import annotations

import subprocess
import sys

import bson
import pytest

from archiverd import write_segment
from tests.mongo_server import free_port
from tests.test_cli_daemon import env_for
from tests.test_redaction import HOSTILE

KINDS = [0, 1, 4, 9, 12, 13, 15, 16]  # a slash, an @, percent-encoding, URI options, AWS, proxy, SRV, unparsable


@pytest.mark.parametrize("i", KINDS)
@pytest.mark.parametrize("server", ["refusing", "closed"])
def test_no_secret_in_status_list_or_progress(i, server, cfg, mongo_uri, tmp_path):
    template, secrets = HOSTILE[i]
    host = mongo_uri.split("//", 1)[1].split("/", 1)[0] if server == "refusing" else f"127.0.0.1:{free_port()}"
    uri = template.format(host=host)
    segment = tmp_path / "part-0001.mkv"
    write_segment(segment, [bson.encode({"_id": "abc"})], source={"db": "d", "collection": "c"})
    env = env_for(cfg, MONGODB_URI=uri, ARCHIVERD_SERVER_TIMEOUT_MS="500", ARCHIVERD_RETRY_SECONDS="1")
    commands = [["status"], ["status", "--json"], ["list"], ["list", "--json"], ["info", str(segment)],
                ["run", "--once", "--progress", "--statistics"],
                ["restore", str(segment), "--to", "scratch.c", "--progress", "--statistics"]]
    if uri.startswith("mongodb://") and "/?" in uri:
        commands.append(["restore", str(segment), "--to", uri.replace("/?", "/scratch.c?", 1), "--progress"])
    procs = [subprocess.Popen([sys.executable, "-m", "archiverd", *c], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    for command, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, (command, err)
        assert proc.returncode in (0, 3, 6), (command, proc.returncode, err)  # 3: a URI that does not parse
        for secret in secrets:
            assert secret not in out and secret not in err, (command, secret, out, err)
