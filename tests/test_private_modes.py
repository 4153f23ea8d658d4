"""Private by default (issue #9, item 5): archive, state and log files 0600 and directories 0700
whatever the umask; ARCHIVERD_GROUP_ACCESS=1 opens them to the group (0640 / 0750). Every file and
directory archiverd creates is looked at: segments, indexes, day directories, the state file and its
lock, the log, a repaired copy (`check --repair`) and a rebuilt index (`reindex`)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from archiverd.format import index
from archiverd.store import layout
from tests.test_cli_daemon import env_for
from tests.test_status import put


def _as_user(cfg, umask: int, *args: str, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "archiverd", *args], env=env_for(cfg, **extra), capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: os.umask(umask))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _modes(root: Path) -> dict[str, int]:
    """Mode of everything under `root` (not `root` itself: the operator made it)."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


def _archive_everything(cfg, collection, umask: int, **extra: str) -> tuple[Path, Path]:
    """Archive, damage and repair one segment, lose and rebuild another's index; (log, rebuilt index)."""
    put(collection, [(i, 100 + i % 3) for i in range(9)])
    log_file = cfg.archive_dir.parent / "log" / "archiverd.log"
    log_file.parent.mkdir(exist_ok=True)
    assert _as_user(cfg, umask, "run", "--once", ARCHIVERD_LOG_FILE=str(log_file), **extra).returncode == 0
    first, second, _ = layout.segments(cfg.collection_dir)
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x08
    first.write_bytes(bytes(data))  # an existing file keeps its mode
    assert _as_user(cfg, umask, "check", "--repair", str(first), **extra).returncode == 4  # damaged, repaired
    assert index.preferred(first) != first
    index.path_for(second).unlink()
    assert _as_user(cfg, umask, "reindex", str(second)).returncode == 0
    assert _as_user(cfg, umask, "status", "--stale-after", "30d", **extra).returncode == 0
    return log_file, index.path_for(second)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o002])
def test_private_whatever_the_umask(cfg, collection, umask):
    log_file, _ = _archive_everything(cfg, collection, umask)
    modes = _modes(cfg.archive_dir)
    names = {Path(p).name for p in modes}
    assert {"part-0001.repaired.mkv", "archiverd-state.json", ".archiverd-state.lock", "part-0001.index.json"} <= names
    wrong = {p: oct(m) for p, m in modes.items()
             if m != (0o700 if (cfg.archive_dir / p).is_dir() else 0o600)}
    assert not wrong, wrong
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_group_access_opens_to_the_group_only(cfg, collection):
    log_file, rebuilt = _archive_everything(cfg, collection, 0o022, ARCHIVERD_GROUP_ACCESS="1")
    modes = _modes(cfg.archive_dir)
    # reindex takes no configuration: the index it rebuilds is private (0600), never wider
    assert modes.pop(str(rebuilt.relative_to(cfg.archive_dir))) == 0o600
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o750 if (cfg.archive_dir / p).is_dir() else 0o640)}
    assert not wrong, wrong
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o640
    assert all(m & 0o007 == 0 for m in modes.values())  # never world-readable


def test_group_access_under_a_strict_umask(cfg, collection):
    put(collection, [(1, 100)])
    assert _as_user(cfg, 0o077, "run", "--once", ARCHIVERD_GROUP_ACCESS="1").returncode == 0
    modes = _modes(cfg.archive_dir)
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o750 if (cfg.archive_dir / p).is_dir() else 0o640)}
    assert not wrong, wrong
