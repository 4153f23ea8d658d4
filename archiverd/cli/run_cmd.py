"""`archiverd run`: the daemon, one cycle (--once), or a plan (--dry-run)."""
from __future__ import annotations

import sys

import click

from ..store import layout
from ..service.archiver import watermark
from ..config import Config
from ..service.daemon import Daemon
from ..service.source import Source
from ._common import with_config


def _dry_run(cfg: Config) -> int:
    source = Source(cfg)
    wm = watermark(cfg)
    per_day: dict[str, list[int]] = {}
    for doc in source.expired(wm):
        day = per_day.setdefault(layout.day_label(source.date_of(doc)), [0, 0])
        day[0] += 1
        day[1] += len(doc.raw)
    counts = source.counts(wm)
    click.echo(f"dry run: nothing is written or deleted. watermark {wm.isoformat()}")
    click.echo(f"{'day':<12} {'documents':>10} {'BSON bytes':>14}")
    for day, (n, size) in sorted(per_day.items()):
        click.echo(f"{day:<12} {n:>10} {size:>14,}")
    total = sum(n for n, _ in per_day.values())
    click.echo(f"{'total':<12} {total:>10} {sum(s for _, s in per_day.values()):>14,}")
    click.echo(f"would archive and then delete {total} documents; never touched: "
               f"{counts['missing_date']} without {cfg.date_field}, {counts['non_date']} with a non-date value")
    return 0


@click.command("run")
@click.option("--once", is_flag=True, help="Run one cycle and exit (for cron): 0 ok, 1 documents kept back.")
@click.option("--dry-run", is_flag=True, help="Show what would be archived and deleted, per day; change nothing.")
@with_config
def command(cfg: Config, once: bool, dry_run: bool) -> int:
    """Archive expired documents: seal them into per-day segments, then delete them.

    Without --once it runs until SIGTERM/SIGINT, woken by the change stream and by the clock.

    \b
    Examples:
      MONGODB_URI=mongodb://db1/ archiverd run --once
      archiverd run --dry-run --config /etc/archiverd/archiverd.toml
    """
    if dry_run:
        return _dry_run(cfg)
    bar = None
    if once and sys.stderr.isatty():
        probe = Source(cfg)
        bar = click.progressbar(length=probe.count(probe.expired_filter(watermark(cfg))), label="archiving",
                                file=sys.stderr)
        probe.close()
    daemon = Daemon(cfg, progress=bar.update if bar else None)
    daemon.install_signal_handlers()
    if not once:
        return daemon.run()
    if bar:
        with bar:
            code, stats = daemon.once()
    else:
        code, stats = daemon.once()
    if stats is not None:
        s = stats.summary()
        click.echo(f"archived {s['sealed']} documents into {s['segments']} segments over {s['days']} days, deleted "
                   f"{s['deleted']}, kept {s['changed']} changed since read, recovered {s['recovered']}, "
                   f"{s['seconds']:.1f} s", err=True)
    return code
