"""The command line as a user runs it: a real process, exit codes, no tracebacks."""
import json
import time
import subprocess
import sys

import bson
import pytest
from bson import json_util

from archiverd import write_segment
from archiverd.format import index
from archiverd.format.documents import DECODE_OPTIONS

UTC_JSON = json_util.JSONOptions(tz_aware=True)


def run(*args, check_code=None):
    proc = subprocess.run([sys.executable, "-m", "archiverd", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check_code is not None:
        assert proc.returncode == check_code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def segment(tmp_path, eat_docs, text_docs, every_type):
    path = tmp_path / "part-0001.mkv"
    docs = eat_docs[:2] + text_docs[:20] + [every_type]
    write_segment(path, docs, source={"db": "evolving_agents_db", "collection": "eat_agent_experiences"})
    return path, docs


def test_verify_ok_and_damaged(segment):
    path, docs = segment
    out = run("verify", path, check_code=0).stdout
    assert out.startswith("OK") and f"{len(docs)} documents" in out
    report = json.loads(run("verify", "--json", path, check_code=0).stdout)
    assert report["ok"] and report["documents"] == len(docs)
    idx = json.loads(index.path_for(path).read_text())  # every frame read is counted as data or parity
    assert report["frames"] == idx["frames"] == report["data_frames"] + report["parity_frames"]
    assert report["data_frames"] == idx["data_frames"] and report["parity_frames"] > 0
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    proc = run("verify", path, check_code=4)
    assert "FAILED" in proc.stderr and "SHA-256" in proc.stderr


def test_verify_independent_reader_agrees(segment):
    path, _ = segment
    run("verify", "--independent", path, check_code=0)


def test_inspect_summarises_from_the_index(segment):
    path, docs = segment
    info = json.loads(run("inspect", "--json", path, check_code=0).stdout)
    assert info["documents"] == len(docs) and info["source"]["collection"] == "eat_agent_experiences"
    assert info["bson_bytes"] == sum(map(len, docs))
    assert "documents" in run("inspect", path, check_code=0).stdout


def test_export_jsonl_relaxed_and_canonical(segment, tmp_path):
    path, docs = segment
    lines = run("export", path, check_code=0).stdout.splitlines()
    assert len(lines) == len(docs)
    assert json_util.loads(lines[2], json_options=UTC_JSON) == bson.decode(docs[2], DECODE_OPTIONS)
    out = tmp_path / "out.jsonl"
    run("export", "--canonical", "-o", out, path, check_code=0)
    canonical = out.read_text().splitlines()
    assert '"$numberInt"' in canonical[2]
    # canonical Extended JSON is type-exact: it re-encodes to the archived bytes
    assert bson.encode(json_util.loads(canonical[5], json_options=json_util.CANONICAL_JSON_OPTIONS)) == docs[5]


def test_export_of_damaged_segment_writes_what_verifies_and_names_the_rest(segment, tmp_path):
    path, docs = segment
    idx_path = index.path_for(path)
    idx = json.loads(idx_path.read_text())
    idx["docs"][3]["sha256"] = "f" * 64
    idx_path.write_text(json.dumps(idx))
    out = tmp_path / "out.jsonl"
    proc = run("export", "--canonical", "-o", out, path, check_code=4)
    assert "1 document could not be recovered" in proc.stderr and idx["docs"][3]["_id"]["$oid"] in proc.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(docs) - 1
    decoded = [json_util.loads(line, json_options=json_util.CANONICAL_JSON_OPTIONS) for line in lines[:5]]
    assert [bson.encode(d) for d in decoded] == docs[:3] + docs[4:6]
    for bad in ("/no/such/dir/out.jsonl", tmp_path):
        proc = run("export", "-o", bad, path, check_code=3)
        assert proc.stderr.count("\n") == 1


def test_export_of_a_repairable_segment_writes_everything_and_says_so(segment, tmp_path):
    """Parity recovers every document: all of them are written, the segment is named with the advice
    to repair it, and the exit code is a warning (1), not a loss (4)."""
    path, docs = segment
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside one frame: its CRC fails and parity rebuilds it
    path.write_bytes(bytes(data))
    out = tmp_path / "out.jsonl"
    proc = run("export", "--canonical", "-o", out, path, check_code=1)
    assert "damaged (repairable)" in proc.stderr and "check --repair" in proc.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(docs)
    decoded = [json_util.loads(line, json_options=json_util.CANONICAL_JSON_OPTIONS) for line in lines[:-1]]
    assert [bson.encode(d) for d in decoded] == docs[:-1]  # the last has dates Python cannot hold


def test_get_one_document(segment):
    path, docs = segment
    _id = bson.decode(docs[7])["_id"]
    out = run("get", path, json.dumps({"$oid": str(_id)}), check_code=0).stdout
    assert json_util.loads(out, json_options=UTC_JSON) == bson.decode(docs[7], DECODE_OPTIONS)
    assert "not archived: \"nope\"" in run("get", path, '"nope"', check_code=1).stderr


def test_bad_arguments_and_files_are_clear_errors(tmp_path):
    assert "Usage" in run("verify", check_code=3).stderr
    proc = run("verify", tmp_path / "absent.mkv", check_code=4)
    assert "no such segment file" in proc.stderr
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x00" * 100)
    assert "index file is missing" in run("inspect", junk, check_code=4).stderr


def test_export_says_which_copy_is_newest(tmp_path):
    v1 = bson.encode({"_id": "exp-1", "final_outcome": "first"})
    v2 = bson.encode({"_id": "exp-1", "final_outcome": "edited later"})
    other = bson.encode({"_id": "exp-2"})
    older, newer = tmp_path / "b" / "part-0001.mkv", tmp_path / "a" / "part-0001.mkv"  # names sort the wrong way
    older.parent.mkdir()
    newer.parent.mkdir()
    write_segment(older, [v1, other])
    time.sleep(0.01)  # sealing order (created_at, ms) decides, not names or arguments
    write_segment(newer, [v2])
    proc = run("export", newer, older, check_code=0)  # argument order does not decide: sealing order does
    assert len(proc.stdout.splitlines()) == 3 and "1 older copy of re-archived _ids included" in proc.stderr
    proc = run("export", "--newest-only", older, newer, check_code=0)
    docs = [json_util.loads(line) for line in proc.stdout.splitlines()]
    assert [d["_id"] for d in docs] == ["exp-2", "exp-1"] and docs[1]["final_outcome"] == "edited later"
    assert "skipped" in proc.stderr


def test_every_command_module_is_listed_and_loaded_only_when_it_runs():
    """Commands are imported on first use (start-up of each command roughly halves); the table
    must name every command module, each under the name its command declares."""
    import importlib
    from pathlib import Path

    from archiverd import cli as cli_module
    modules = {p.stem for p in Path(cli_module.__file__).parent.glob("*_cmd.py")}
    assert {module for module, _ in cli_module._COMMANDS.values()} == modules
    for name, (module, attribute) in cli_module._COMMANDS.items():
        command = getattr(importlib.import_module(f"archiverd.cli.{module}"), attribute)
        assert command.name == name
    probe = ("import sys; from archiverd.cli import main\n"
             "try: main(['get', '--help'])\n"
             "except SystemExit: pass\n"
             "print(sorted(m for m in ('av', 'pymongo', 'archiverd.cli.run_cmd') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _every_command():
    """(command path, click command) of archiverd and every command and subcommand under it."""
    import click

    from archiverd.cli import cli
    ctx = click.Context(cli)
    stack = [("archiverd", cli)]
    while stack:
        path, command = stack.pop()
        yield path, command
        if isinstance(command, click.Group):
            stack += [(f"{path} {name}", command.get_command(ctx, name)) for name in command.list_commands(ctx)]


def test_help_examples_keep_their_line_continuations():
    """A lone backslash at the end of a docstring line joins it to the next one, so an example's
    continuation vanished from --help (`... 2026/08/           --to ...`): the text after a run of
    spaces inside a help line may only be a comment."""
    import re
    joined = [(path, line) for path, command in _every_command() for line in (command.help or "").splitlines()
              if re.search(r"\S {4,}[^#\s]", line)]
    assert joined == []


@pytest.mark.parametrize("group", [[], ["key"], ["hold"], ["catalog"]])
def test_a_group_without_its_command_prints_its_help(group):
    """`archiverd` or `archiverd key` alone is a usage mistake (exit 3) that shows what to type:
    the group's help, not one "error:" line that wraps the whole help and then repeats the usage."""
    proc = run(*group, check_code=3)
    assert proc.stderr.startswith(f"Usage: {' '.join(['archiverd', *group])} [OPTIONS] COMMAND")
    assert "\nCommands:\n" in proc.stderr and "archiverd: error" not in proc.stderr and proc.stdout == ""


# options the README lists once, below its command table, instead of in each row
_SHARED_OPTIONS = {"--help", "-h", "--config", "--uri", "--db", "--collection", "--date-field", "--older-than",
                   "--archive-dir", "--progress", "--no-progress", "--progress-interval", "--statistics"}


def test_the_readme_command_table_agrees_with_each_commands_options():
    """The table is what a newcomer reads instead of --help: each row names every option of its
    command (a group's row: of its subcommands), and none that the command does not take."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = {m[1]: m[0] for m in re.findall(r"^(\| `archiverd (\w+).*\|)$", section, re.M)}
    options: dict[str, list[tuple[str, ...]]] = {}
    for path, command in _every_command():
        words = path.split()
        if len(words) > 1 and not command.hidden:
            options.setdefault(words[1], []).extend(
                tuple(p.opts + p.secondary_opts) for p in command.params if p.param_type_name == "option")
    assert sorted(rows) == sorted(options)
    for name, row in rows.items():
        named = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-zA-Z])(?![\w-])", row))
        takes = {o for opts in options[name] for o in opts}
        assert named - takes - _SHARED_OPTIONS == set(), (name, "the row names options the command lacks")
        unnamed = [opts for opts in options[name] if not (set(opts) & (named | _SHARED_OPTIONS))]
        assert unnamed == [], (name, "options missing from the row")
