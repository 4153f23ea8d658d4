"""Progress on long work: a bar on a terminal, periodic lines with --progress, --statistics at the end;
none of it changes what is archived, restored or exported."""
from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from archiverd import progress, units, write_segment
from archiverd.format import index
from archiverd.store import layout
from tests.test_cli_daemon import run
from tests.test_status import put


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder(io.StringIO):
    """A stream that remembers when (by the fake clock) each write happened."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.writes: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((self.clock.now, text))
        return super().write(text)


def test_lines_come_at_most_every_interval_and_once_at_the_end():
    clock = FakeClock()
    out = Recorder(clock)
    meter = progress.Meter("exporting", mode=progress.LINES, interval=10, stream=out, clock=clock)
    meter.expect(documents=400, bytes=400_000)
    for _ in range(400):  # 50 s of work, a document every 1/8 s
        clock.now += 0.125
        meter.add(1, 1000)
    meter.close()
    meter.close()  # closing twice prints nothing more
    times = [t for t, _ in out.writes]
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and lines[-1].endswith("(done)")
    assert [t - 1000 for t in times] == [10, 20, 30, 40, 50, 50]
    assert all(line.startswith("archiverd: progress: exporting, ") for line in lines)
    assert "80 of 400 documents (20.0%)" in lines[0] and "8.0 documents/s" in lines[0]
    assert "ETA 0:40" in lines[0] and "elapsed 0:10" in lines[0]
    assert "400 of 400 documents (100.0%)" in lines[-1] and "ETA 0:00" in lines[-1]


def test_statistics_add_up_and_stages_are_timed():
    clock = FakeClock()
    meter = progress.Meter("restoring", clock=clock)

    def decoded():
        for _ in range(3):
            clock.now += 2.0  # producing each item takes 2 s
            yield b"x" * 10

    for item in meter.timed("decode", decoded()):
        meter.add(1, len(item))
        with meter.stage("insert"):
            clock.now += 1.0
    clock.now += 0.5  # outside every stage
    meter.close()
    stats = meter.statistics()
    assert stats["documents"] == 3 and stats["bytes"] == 30 and stats["seconds"] == pytest.approx(9.5)
    assert stats["stages"] == {"decode": pytest.approx(6.0), "insert": pytest.approx(3.0),
                               "other": pytest.approx(0.5)}
    assert sum(stats["stages"].values()) == pytest.approx(stats["seconds"])
    text = meter.statistics_text()
    assert text.splitlines()[0].startswith("statistics: restoring: 3 documents, 30 B, 9.50 s")
    assert "decode" in text and "63.2" in text  # 6 of 9.5 s


def test_off_writes_nothing_and_a_broken_terminal_never_stops_the_work():
    clock = FakeClock()
    quiet = io.StringIO()
    meter = progress.Meter("x", mode=progress.OFF, stream=quiet, clock=clock)
    meter.add(5, 5)
    meter.close()
    assert quiet.getvalue() == ""

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("closed")

    meter = progress.Meter("x", mode=progress.LINES, interval=0.1, stream=Broken(), clock=clock)
    for _ in range(10):
        clock.now += 1
        meter.add(1, 1)
    meter.close()
    assert meter.documents == 10 and meter.mode == progress.OFF


def test_the_bar_is_cleared_before_anything_else_is_written():
    clock = FakeClock()
    terminal = Recorder(clock)
    meter = progress.Meter("checking", mode=progress.BAR, stream=terminal, clock=clock)
    meter.expect(documents=10)
    meter.add(5, 50)
    assert terminal.getvalue().startswith("\r\x1b[Kchecking [") and "50%" in terminal.getvalue()
    other = progress._Clearing(io.StringIO(), meter)
    other.write("a log line\n")
    assert terminal.getvalue().endswith("\r\x1b[K")  # erased before the other line
    clock.now += 1
    meter.add(5, 50)
    meter.close()
    assert terminal.getvalue().endswith("100% 10/10 docs 100 B 10 docs/s 100 B/s ETA 0:00\n")


@pytest.fixture
def segments(tmp_path, text_docs):
    paths = []
    for n in range(3):
        path = tmp_path / f"d{n}" / "part-0001.mkv"
        path.parent.mkdir()
        write_segment(path, text_docs[n * 60:(n + 1) * 60], source={"db": "d", "collection": "c"})
        paths.append(path)
    return paths


def _cli(*args: object, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "archiverd", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_export_progress_lines_and_statistics_change_nothing(segments, tmp_path):
    plain = _cli("export", "--canonical", *segments)
    assert plain.returncode == 0 and plain.stderr.splitlines() == ["exported 180 documents"]  # not a TTY: quiet
    shown = _cli("export", "--canonical", "--progress", "--progress-interval", "0.1", "--statistics", *segments)
    assert shown.returncode == 0 and shown.stdout == plain.stdout
    lines = shown.stderr.splitlines()
    progress_lines = [line for line in lines if line.startswith("archiverd: progress: exporting, ")]
    assert progress_lines and progress_lines[-1].endswith("(done)") and "180 of 180 documents" in progress_lines[-1]
    start = next(i for i, line in enumerate(lines) if line.startswith("statistics: exporting: 180 documents"))
    assert lines[start + 1].split() == ["stage", "seconds", "%"]
    assert {row.split()[0] for row in lines[start + 2:]} == {"decode", "write", "other"}
    assert sum(float(row.split()[2]) for row in lines[start + 2:]) == pytest.approx(100, abs=0.5)
    out = tmp_path / "out.jsonl"
    _cli("export", "--canonical", "--statistics", "-o", out, *segments)
    assert out.read_text() == plain.stdout


def test_check_progress_counts_bytes(segments):
    proc = _cli("check", "--progress", "--progress-interval", "0.1", "--statistics", *segments, env=_no_config_env())
    assert proc.returncode == 0, proc.stderr
    final = [line for line in proc.stderr.splitlines() if line.startswith("archiverd: progress: checking")][-1]
    total = units.size(sum(p.stat().st_size for p in segments))
    assert f"180 documents, {total} of {total}," in final and final.endswith("(done)")
    assert "statistics: checking: 180 documents" in proc.stderr
    assert "\n  checksum " in proc.stderr and "\n  structure " in proc.stderr


def _no_config_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}


def test_restore_with_progress_inserts_the_same(cfg, collection, segments):
    quiet = run(cfg, "restore", *segments, "--to", f"{cfg.database}.plain", code=0)
    shown = run(cfg, "restore", *segments, "--to", f"{cfg.database}.shown", "--progress", "--progress-interval",
                "0.1", "--statistics", code=0)
    db = collection.database
    assert {d["_id"]: d.raw for d in db["plain"].find()} == {d["_id"]: d.raw for d in db["shown"].find()}
    assert db["shown"].count_documents({}) == 180
    assert "archiverd: progress:" not in quiet.stderr
    assert "archiverd: progress: restoring, 180 of 180 documents" in shown.stderr
    assert "statistics: restoring: 180 documents" in shown.stderr and "insert" in shown.stderr


def _archived(collection_dir: Path) -> dict[str, list[str]]:
    return {str(p.relative_to(collection_dir)): [e["sha256"] for e in index.load(index.path_for(p))["docs"]]
            for p in layout.segments(collection_dir)}


def test_run_once_archives_the_same_with_progress_and_statistics(cfg, collection):
    put(collection, [(i, 100 + i % 4) for i in range(40)])
    documents = list(collection.find().sort("_id"))
    other = cfg.database + "_twin"
    twin = collection.database.client[other]["eat_agent_experiences"]
    twin.insert_many(documents)
    try:
        run(cfg, "run", "--once", code=0)
        proc = run(cfg, "run", "--once", "--progress", "--progress-interval", "0.1", "--statistics", code=0,
                   MONGODB_DATABASE_NAME=other)
        mine = cfg.archive_dir / other / "eat_agent_experiences"
        assert _archived(mine) == _archived(cfg.collection_dir) and len(_archived(mine)) == 4
        assert "archiverd: progress: archiving, 40 of 40 documents (100.0%)" in proc.stderr
        stats = proc.stderr[proc.stderr.index("statistics: archiving: 40 documents"):]
        for stage in ("read", "encode", "seal", "delete", "recover", "other"):
            assert f"\n  {stage} " in stats, stage
    finally:
        collection.database.client.drop_database(other)


def test_progress_options_outside_one_cycle_are_usage_errors(cfg, collection):
    for args in (["run", "--progress"], ["run", "--statistics"], ["run", "--once", "--dry-run", "--progress"]):
        proc = run(cfg, *args, code=3)
        assert "--progress and --statistics go with --once" in proc.stderr
    for bad in ("0", "-1", "inf", "nan", "1e9", "soon"):
        proc = run(cfg, "export", "--progress-interval", bad, "x.mkv", code=3)
        assert proc.stderr.count("\n") == 1


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "archiverd", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(60), out.decode(errors="replace")


def test_a_terminal_gets_a_bar_that_other_output_clears(segments, tmp_path):
    env = _no_config_env() | {"COLUMNS": "120"}
    code, screen = _on_a_terminal(["check", "-v", *map(str, segments)], env)
    assert code == 0, screen
    assert "\r\x1b[Kchecking [" in screen and "archiverd: progress:" not in screen
    for line in screen.split("\r\n"):
        if line.startswith("ok"):  # a result line never starts in the middle of a bar
            assert "[" not in line.split("ok", 1)[0]
    code, screen = _on_a_terminal(["export", "-o", str(tmp_path / "o.jsonl"), "--no-progress", *map(str, segments)],
                                  env)
    assert code == 0 and "\x1b[K" not in screen and "exported 180 documents" in screen


def test_statistics_of_a_run_that_archived_nothing(cfg, collection):
    put(collection, [(1, 5)])
    proc = run(cfg, "run", "--once", "--statistics", code=0)
    assert "statistics: archiving: 0 documents, 0 B" in proc.stderr
    assert collection.count_documents({}) == 1
