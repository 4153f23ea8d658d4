"""`archiverd key init|export|import|rotate|list`: the master key of an encrypted archive.

Losing the key loses the archive: `init` says so, `status` warns until an export was made, and
`export --paper` prints a page to keep like any other secret.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from .. import units
from ..config import Config
from ..crypto import envelope, keyring, paper, rotation
from ..errors import EXIT_WARNING, ArchiverdError, ConfigError, EncryptionKeyError, SegmentError, StorageError
from ..store import durable, objects
from ._common import with_config


@click.group("key")
def command() -> None:
    """Create, back up, restore and rotate the master key (ARCHIVERD_ENCRYPTION_KEY_FILE).

    With encryption on, every segment has its own random data key, wrapped by the master key and
    kept beside the video (part-NNNN.key.json) and in its header. Losing every copy of the master
    key loses the archive: export it right after `init`, and after every `rotate`.
    """


@command.command("init")
@with_config
def init(cfg: Config) -> int:
    """Create the key file named by ARCHIVERD_ENCRYPTION_KEY_FILE (mode 0600; never overwrites).

    \b
    Examples:
      ARCHIVERD_ENCRYPTION_KEY_FILE=/etc/archiverd/master.key archiverd key init
      archiverd key export --paper /root/archiverd-key.html
    """
    path = keyring.key_file(cfg)
    if cfg.archive_dir == path or cfg.archive_dir in path.parents:
        raise EncryptionKeyError(f"{path} lies inside the archive directory {cfg.archive_dir}: a key kept beside "
                                 "what it protects protects nothing; choose a path elsewhere")
    ring = keyring.Keyring([keyring.MasterKey.generate()])
    with keyring.locked(path):
        keyring.create(path, ring)
    click.echo(f"created key file {path} holding key {ring.active.id}")
    click.echo("Losing it loses the archive. Back it up now: archiverd key export --paper FILE (print it), "
               "or archiverd key export FILE (keep it off this machine).")
    return 0


@command.command("export")
@click.argument("destination", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--paper", "paper_form", is_flag=True,
              help="A printable HTML page (QR code and numbered lines); with '-', the lines on standard output.")
@with_config
def export(cfg: Config, destination: Path, paper_form: bool) -> int:
    """Write every master key to DESTINATION (created 0600; an existing file is never overwritten).

    Without --paper: a copy of the key file, for `archiverd key import FILE`. With --paper: an HTML
    page to print, holding the keys as a QR code and as numbered lines with a checksum each, for
    `archiverd key import --paper` (like `borg key export --paper`). Either holds the keys in the
    clear: keep it like the key itself. The export is recorded in the key file; `status` warns
    while a key was never exported.

    \b
    Examples:
      archiverd key export --paper /root/archiverd-key.html   # then print it
      archiverd key export --paper -                          # the lines, on the terminal
      archiverd key export /media/usb/archiverd.key
    """
    path = keyring.key_file(cfg)
    ring = keyring.load(path)
    kind = "paper" if paper_form else "file"
    data = paper.page(ring) if paper_form else ring.to_bytes().decode()
    if str(destination) == "-":
        click.echo(paper.text(ring) if paper_form else data, nl=False)
        to = "standard output"
    else:
        if destination.exists() or destination.is_symlink():
            raise ConfigError(f"{destination} exists; choose another name (an export never overwrites a file)")
        durable.write_new(destination.absolute(), data.encode(), mode=keyring.KEY_FILE_MODE)
        to = str(destination.absolute())
        click.echo(f"exported {len(ring.keys)} key(s) ({', '.join(k.id for k in ring.keys)}) to {to}", err=True)
    try:
        keyring.record_export(path, kind, [k.id for k in ring.keys], to)
    except (StorageError, EncryptionKeyError) as exc:  # a read-only key file (a systemd credential, ...)
        click.echo(f"warning: the export was written but could not be recorded in the key file ({exc}); "
                   "`status` will keep warning that the key was never exported", err=True)
        return EXIT_WARNING
    return 0


def read_typed_lines(ask: Callable[[str], str], tell: Callable[[str], None]) -> list[keyring.MasterKey]:
    """Ask for the paper key's lines one by one; a line whose checksum fails is asked again."""
    parts: list[bytes] = []
    total = None
    while total is None or len(parts) < total:
        number = len(parts) + 1
        text = ask(f"line {number}")
        try:
            got, data = paper.parse_line(text if ":" in text else f"{number}: {text}")
            if got != number:
                raise EncryptionKeyError(f"that is line {got}; type line {number}")
            if total is None:
                total = paper.total_lines(data)
        except EncryptionKeyError as exc:
            tell(f"  {exc}; type it again")
            continue
        parts.append(data)
    return paper.decode(b"".join(parts))


@command.command("import")
@click.argument("source", required=False, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--paper", "paper_form", is_flag=True,
              help="SOURCE (or what is typed) is the paper form: numbered lines, or the QR code's text.")
@with_config
def import_(cfg: Config, source: Path | None, paper_form: bool) -> int:
    """Restore master keys from an export into the key file (ARCHIVERD_ENCRYPTION_KEY_FILE).

    SOURCE is a file made by `key export` (a key file copy, or the paper page), a text file with the
    paper lines or the QR code's text, or '-' for standard input. With --paper and no SOURCE on a
    terminal, the lines are asked for one by one, each checked as it is typed.

    The key file is created if it does not exist; an existing one only gains the keys it lacks
    (nothing in it is changed or removed). A damaged key file must be moved aside first.

    \b
    Examples:
      archiverd key import /media/usb/archiverd.key
      archiverd key import --paper                 # type the lines from the printed page
      zbarimg -q --raw page.png | archiverd key import --paper -
    """
    path = keyring.key_file(cfg)
    if source is None and not paper_form:
        raise ConfigError("give the export to import (a file, or '-'), or --paper to type the lines")
    if source is None and sys.stdin.isatty():
        click.echo("Type the numbered lines of the paper key (the checksum after ' - ' included).", err=True)
        keys = read_typed_lines(lambda what: click.prompt(what, err=True), lambda msg: click.echo(msg, err=True))
        where = "typed paper key"
    else:
        if source is None or str(source) == "-":
            text, where = sys.stdin.read(), "standard input"
        else:
            try:
                text, where = source.read_text(encoding="utf-8"), str(source.absolute())
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
        if text.lstrip().startswith("{"):
            keys = keyring.Keyring.from_bytes(text.encode(), None).keys
        else:
            keys = paper.from_text(text)
    added = keyring.import_keys(path, keys, where)
    if added:
        click.echo(f"imported key(s) {', '.join(added)} into {path}")
    else:
        click.echo(f"{path} already holds every key of this export ({', '.join(k.id for k in keys)})")
    return 0


@command.command("rotate")
@with_config
def rotate(cfg: Config) -> int:
    """Make a new master key and re-wrap every segment's data key with it; no video is touched.

    Old keys stay in the key file (retired): each video's header keeps a copy of its data key under
    the key that sealed it. With ARCHIVERD_ARCHIVE_URL, where no object is ever replaced, each
    segment gains a key object part-NNNN.key.<new key id>.json beside its key file instead. A rotation interrupted by a crash, or stopped by a damaged segment key
    file, is resumed by running `key rotate` again. Export the key afterwards.

    Exit 0 when every segment key file was re-wrapped; 4 when some could not be (listed).

    \b
    Examples:
      archiverd key rotate && archiverd key export --paper /root/archiverd-key-2.html
    """
    path = keyring.key_file(cfg)
    store = objects.open_url(cfg.archive_url) if cfg.archive_url is not None else None
    report = rotation.rotate(path, cfg.archive_dir, store=store)
    what = "resumed the rotation to" if report.resumed else "new active key"
    click.echo(f"{what} {report.new_key}: {units.plural(report.rewrapped, 'segment key file')} re-wrapped, "
               f"{report.current} already under it")
    for problem in report.failed:
        click.echo(f"  not re-wrapped: {problem}", err=True)
    if not report.finished:
        click.echo("the rotation is unfinished (old keys kept); fix the files above and run `archiverd key rotate` "
                   "again", err=True)
        return SegmentError.exit_code
    click.echo("Export the key file again: archiverd key export --paper FILE")
    return 0


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@with_config
def list_(cfg: Config, as_json: bool) -> int:
    """The master keys: id, state, when created and retired, whether exported, and how many segment
    key files under the archive directory (and key objects in ARCHIVERD_ARCHIVE_URL: a rotated
    segment has one under each key) each one wraps.

    Exit 1 while a warning stands (a key never exported, an unfinished rotation), as in `status`.
    """
    ring = keyring.load(keyring.key_file(cfg))
    counts: Counter[str] = Counter()
    for path in rotation.key_files(cfg.archive_dir):
        try:
            counts[envelope.read_file(path)["key_id"]] += 1
        except ArchiverdError:
            counts["unreadable"] += 1
    if cfg.archive_url is not None:  # the key objects in the bucket: the seal's, and those `rotate` added
        store = objects.open_url(cfg.archive_url)
        for name in store.names():
            if name.endswith(envelope.SUFFIX) or envelope.rotated_key_id(name) is not None:
                try:
                    counts[store.read_key_file(name)["key_id"]] += 1
                except ArchiverdError:
                    counts["unreadable"] += 1
    exported = {kid for e in ring.exports for kid in e.get("key_ids", [])}
    rows = [{"id": k.id, "state": k.state, "created_at": k.created_at, "retired_at": k.retired_at,
             "exported": k.id in exported, "segments": counts.get(k.id, 0)} for k in ring.keys]
    warning = keyring.export_warning(cfg)
    if as_json:
        click.echo(json.dumps({"keys": rows, "rotation": ring.rotation, "unreadable_key_files": counts["unreadable"],
                               "warning": warning}, indent=1))
    else:
        for row in rows:
            click.echo(f"{row['id']}  {row['state']:<8}  created {row['created_at']}  "
                       f"{'exported' if row['exported'] else 'NEVER EXPORTED'}  {units.plural(row['segments'], 'segment')}")
        if counts["unreadable"]:
            click.echo(f"{units.plural(counts['unreadable'], 'segment key file')} could not be read "
                       "(`archiverd check` names them)")
        if warning:
            click.echo(f"warning: {warning}", err=True)
    return 1 if warning else 0
