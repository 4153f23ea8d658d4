"""`archiverd check` over a real archive directory: statuses, JSON, exit codes, --repair."""
import json
import os
import re
import shutil

import pytest

from archiverd import write_segment
from archiverd.format import index
from tests.test_cli import run


@pytest.fixture
def archive(tmp_path, eat_docs, text_docs):
    root = tmp_path / "archive"
    paths = []
    for day, docs in ((1, eat_docs[:3] + text_docs[:30]), (2, text_docs[30:90]), (3, eat_docs[3:6])):
        path = root / "2026" / "01" / f"{day:02d}" / "part-0001.mkv"
        path.parent.mkdir(parents=True)
        write_segment(path, docs, block_bytes=100_000)
        paths.append(path)
    return root, paths


def _check(*args, code):
    proc = run("check", "--json", *args, check_code=code)
    return json.loads(proc.stdout)


def test_an_intact_archive_is_ok(archive):
    root, paths = archive
    result = _check(root, code=0)
    assert result["ok"] and [s["status"] for s in result["segments"]] == ["ok"] * 3
    assert not any(s["read"] for s in result["segments"])
    result = _check("--read-data", root, code=0)
    assert all(s["read"] for s in result["segments"]) and result["summary"]["documents_read"] == 96
    result = _check("--read-data-subset", "34%", root, code=0)
    assert sum(s["read"] for s in result["segments"]) == 1
    assert run("check", "-v", root, check_code=0).stdout.count("ok ") == 3
    # the summary line says how much was decoded, so that a sampled check visibly did decode
    assert "MB read, checksums only); 3 ok" in run("check", root, check_code=0).stdout
    assert "MB read, 3 decoded in full, 96 documents); 3 ok" in run("check", "--read-data", root, check_code=0).stdout
    sampled = run("check", "--read-data-subset", "34%", root, check_code=0).stdout
    assert re.search(r"MB read, 1 decoded in full, \d+ documents\); 3 ok", sampled), sampled


def test_the_default_output_names_problems_only_and_verbose_lists_every_segment(archive):
    root, (flipped, second, third) = archive
    quiet = run("check", root, check_code=0).stdout.splitlines()
    assert len(quiet) == 1 and quiet[0].startswith("checked 3 segments in ") and quiet[0].endswith("; 3 ok"), quiet
    for flag in ("-v", "--verbose"):
        listed = run("check", flag, root, check_code=0).stdout.splitlines()
        assert len(listed) == 4 and [line.split()[0] for line in listed[:3]] == ["ok"] * 3, listed
        assert listed[3].startswith("checked 3 segments in ") and listed[3].endswith("; 3 ok")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x40
    flipped.write_bytes(bytes(data))
    quiet = run("check", root, check_code=4).stdout
    assert quiet.startswith(f"{'damaged (repairable)':<30}{flipped}\n"), quiet
    assert str(second) not in quiet and str(third) not in quiet and "ok " not in quiet
    assert quiet.splitlines()[-1].endswith("; 1 damaged (repairable), 2 ok")
    listed = run("check", "-v", root, check_code=4).stdout
    assert all(str(path) in listed for path in (flipped, second, third))


def test_each_kind_of_trouble_has_its_status(archive):
    root, (flipped, truncated, orphaned) = archive
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x40
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    index.path_for(orphaned).rename(root / "moved-away.json")
    (flipped.parent / ".part-0002.mkv.1234abcd.tmp").write_bytes(b"half a seal")
    result = _check(root, code=4)
    status = {os.path.basename(os.path.dirname(s["path"])): s["status"] for s in result["segments"]}
    assert status["01"] == "damaged (repairable)"
    assert status["02"].startswith("damaged (unrepairable: ") and status["02"] != "damaged (unrepairable: 0 documents)"
    assert status["03"] == "orphan"
    assert not result["ok"] and len(result["temporaries"]) == 1
    human = run("check", root, check_code=4).stdout
    assert "damaged (repairable)" in human and "orphan" in human and "temporary file" in human


def test_repair_fixes_what_it_can_and_touches_nothing(archive):
    root, (flipped, truncated, orphaned) = archive
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x02
    flipped.write_bytes(bytes(data))
    shutil.move(index.path_for(orphaned), root / "moved-away.json")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = _check("--repair", root, code=4)  # it reports what it found, then repairs
    assert sum(1 for s in result["segments"] if s["repaired"]) == 2
    for path, content in before.items():
        assert path.read_bytes() == content  # nothing was modified
    assert index.repaired_path(flipped).exists() and index.path_for(orphaned).exists()
    result = _check("--read-data", root, code=0)
    assert result["ok"]


def test_only_leftover_temporary_files_is_a_warning(archive):
    root, (first, _, _) = archive
    (first.parent / ".part-0002.mkv.00ff00ff.tmp").write_bytes(b"x")
    assert _check(root, code=1)["ok"]


@pytest.mark.parametrize("args,code", [(["/no/such/archive"], 4), (["--read-data-subset", "150%", "."], 3),
                                       (["--read-data-subset", "ten", "."], 3)])
def test_bad_input_is_a_one_line_error(args, code):
    proc = run("check", *args, check_code=code)
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith(("archiverd: error", "Error"))
