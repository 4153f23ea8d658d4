"""`archiverd status`: what the archiver is doing and what it has done."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from ..store import layout
from ..service import expiry
from ..service.archiver import iso
from ..config import Config, redact
from ..errors import ArchiverdError, ConfigError, DatabaseError, SegmentError
from ..service.source import Source
from ..service.state import State
from ._common import with_config


def leases(source: Source) -> dict[str, Any]:
    """Who holds what: the collection's lease (one active instance) and every day lease held now
    (which process works on which day, since when, until when unless renewed)."""
    now = dt.datetime.now(dt.timezone.utc)
    docs = source.lease_documents()

    def shown(doc: dict[str, Any]) -> dict[str, Any]:
        return {"owner": doc.get("owner"), "since": str(doc.get("since")), "expires_at": str(doc.get("expires_at")),
                "token": doc.get("token")}

    collection = next((d for d in docs if d["_id"] == source.lease_key()), None)
    days = sorted((d for d in docs if d.get("day") is not None and d.get("expires_at") is not None
                   and d["expires_at"] > now), key=lambda d: d["day"])
    return {"lease": shown(collection) if collection else None,
            "day_leases": [{"day": d["day"], **shown(d)} for d in days]}


def collect(cfg: Config) -> dict[str, Any]:
    state = State(cfg.state_file)
    wm = expiry.watermark_ms(cfg)
    cutoff = expiry.cutoff_ms(cfg)
    segments, size = layout.usage(cfg.collection_dir)
    info: dict[str, Any] = {
        "server": redact(cfg.uri), "namespace": cfg.namespace, "date_field": cfg.date_field,
        "threshold_days": cfg.threshold_days, "watermark": iso(wm), "complete_days_before": iso(cutoff),
        "backlog": "shared: processes take a day each" if cfg.shared_backlog else "one active instance",
        "archive_dir": str(cfg.collection_dir), "segments": segments, "bytes_on_disk": size,
        "last_seal": state.get("last_seal"), "last_cycle": state.get("last_cycle"),
        "pending_deletes": state.pending, "change_stream": state.get("change_stream", "not started"),
        "last_error": state.get("last_error"),
        # videos without an index: kept, never removed; `archiverd reindex` rebuilds the index
        "orphans": [str(p.relative_to(cfg.collection_dir)) for p in layout.orphans(cfg.collection_dir)],
        # journaled segments that failed verification: nothing is deleted against them
        "set_aside": state.get("set_aside") or {},
    }
    try:
        source = Source(cfg)
        source.require_namespace()  # a misspelt name is a usage error (exit 3), not "unreachable"
        info.update(source.counts(wm, cutoff))
        info.update(leases(source))
        source.close()
        info["database"] = "reachable"
    except ConfigError:
        raise
    except ArchiverdError as exc:
        info["database"] = f"unreachable: {exc}"
    return info


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@with_config
def command(cfg: Config, as_json: bool) -> int:
    """Watermark, expired backlog, last seal, segments on disk, who holds the collection's lease and
    which process works on which day, change stream, last error.

    Exit code 6 if MongoDB cannot be reached (the local part is still printed).

    \b
    Examples:
      archiverd status
      archiverd status --json | jq .expired
    """
    info = collect(cfg)
    if as_json:
        click.echo(json.dumps(info, indent=1, default=str))
    else:
        for key, value in info.items():
            if key == "day_leases":  # one line per day: which process, since when, until when
                value = [f"{d['day']} held by {d['owner']} since {d['since']} until {d['expires_at']} "
                         f"(token {d['token']})" for d in value]
                for n, line in enumerate(value or ["none"]):
                    click.echo(f"{key if n == 0 else '':>16}: {line}")
                continue
            shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
            click.echo(f"{key:>16}: {shown}")
    if info["database"] != "reachable":
        return DatabaseError.exit_code
    return SegmentError.exit_code if info["orphans"] or info["set_aside"] else 0
