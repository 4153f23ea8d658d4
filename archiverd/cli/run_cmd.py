"""`archiverd run`: the daemon, one cycle (--once), or a plan (--dry-run)."""
from __future__ import annotations

import click

from .. import progress, units
from ..errors import ArchiverdError, ConfigError
from ..service import expiry
from ..service.archiver import iso
from .. import config
from ..config import Config
from ..service.daemon import Daemon
from ..service.source import Source
from ._common import with_config


def _dry_run(cfg: Config) -> int:
    source = Source(cfg)
    source.require_namespace()
    cutoff = expiry.cutoff_ms(cfg)
    per_day: dict[str, list[int]] = {}
    skipped: dict[str, int] = {}
    for raw, _, ms, reason in source.expired(cutoff):
        if ms is None:
            skipped[reason or "not a date"] = skipped.get(reason or "not a date", 0) + 1
            continue
        day = per_day.setdefault(expiry.day_label(ms), [0, 0])
        day[0] += 1
        day[1] += len(raw)
    counts = source.counts(expiry.watermark_ms(cfg), cutoff)
    click.echo(f"dry run: nothing is written or deleted. watermark {iso(expiry.watermark_ms(cfg))}; "
               f"complete days end before {iso(cutoff)}")
    click.echo(f"{'day':<12} {'documents':>10} {'BSON bytes':>14}")
    for day, (n, size) in sorted(per_day.items()):
        click.echo(f"{day:<12} {n:>10} {size:>14,}")
    total = sum(n for n, _ in per_day.values())
    click.echo(f"{'total':<12} {total:>10} {sum(s for _, s in per_day.values()):>14,}")
    waiting = counts["expired"] - counts["ready"]
    click.echo(f"would archive and then delete {units.plural(total, 'document')}, one segment per day; waiting for "
               f"their day to end (+{cfg.day_grace_seconds:g} s): {units.plural(waiting, 'expired document')}")
    never = {**counts["skipped"], **skipped}
    click.echo("never touched: " + (", ".join(f"{n} {reason}" for reason, n in never.items() if n) or "none"))
    return 0


@click.command("run")
@click.option("--once", is_flag=True, help="Run one cycle and exit (for cron): 0 ok, 1 documents kept back.")
@click.option("--dry-run", is_flag=True, help="Show what would be archived and deleted, per day; change nothing.")
@progress.options("archiving")
@with_config
def command(cfg: Config, once: bool, dry_run: bool, meter: progress.Meter) -> int:
    """Archive expired documents: seal them into per-day segments, then delete them.

    Without --once it runs until SIGTERM/SIGINT, woken by the change stream and by the clock.
    With --once, a progress bar on a terminal, progress lines with --progress, and with
    --statistics the time spent reading, encoding, sealing (with verification) and deleting.

    \b
    Examples:
      MONGODB_URI=mongodb://db1/ archiverd run --once
      archiverd run --once --progress --statistics     # cron: a line every 10 s, timings at the end
      archiverd run --dry-run --config /etc/archiverd/archiverd.toml
    """
    asked = click.get_current_context().params
    if (asked.get("progress") or asked.get("statistics")) and (dry_run or not once):
        raise ConfigError("--progress and --statistics go with --once (one cycle)")
    if dry_run:
        return _dry_run(cfg)
    if once and meter.mode != progress.OFF:
        try:  # the total for the ETA; without it, progress shows counts and rates only
            probe = Source(cfg)
            try:
                meter.expect(documents=probe.count(probe.expired_filter(expiry.cutoff_ms(cfg))))
            finally:
                probe.close()
        except ArchiverdError:
            pass  # the cycle reports (or rides out) the same problem
    reload = (lambda: config.load(cfg.config_file)) if cfg.config_file else None
    daemon = Daemon(cfg, reload=reload)
    daemon.install_signal_handlers()
    if not once:
        return daemon.run()
    daemon.archiver.meter = meter  # the Daemon builds the Archiver; the meter only observes it
    code, stats = daemon.once()
    meter.close()
    if stats is not None:
        s = stats.summary()
        click.echo(f"archived {units.plural(s['sealed'], 'document')} into {units.plural(s['segments'], 'segment')} over "
                   f"{units.plural(s['days'], 'day')}, deleted "
                   f"{s['deleted']}, kept {s['changed']} changed since read, recovered {s['recovered']}, "
                   f"{s['seconds']:.1f} s", err=True)
    return code
