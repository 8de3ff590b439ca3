"""The ``redset`` command line, on click (commands) and rich (tables, the
live view, progress).

Every command that talks to a server takes ``--url`` (or ``REDSET_URL``;
default ``redis://localhost:6379/0``). Expected failures (a wrong URL, a
refused password, a key of another type, a missing set, bad input) end in
one line on stderr and a non-zero status: 2 for usage errors (bad
arguments, a malformed URL), 1 for the rest; see :mod:`redset._cli`.
"""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import click

from redset._cli import CommandError, check_url, run_command, server_main, version_line

__all__ = ["main", "cli"]

DEFAULT_URL = "redis://localhost:6379/0"
#: Seconds over which ``watch`` computes how fast a length changes.
RATE_WINDOW = 5.0
_GLOB = set("*?[")


def _kinds() -> Dict[str, Type[Any]]:
    from redset import ScheduledSet, SortedSet, TimeSortedSet

    return {"sorted": SortedSet, "time": TimeSortedSet, "scheduled": ScheduledSet, "auto": ScheduledSet}


def _serializer(name: str) -> Any:
    from redset import serializers

    if name == "none":
        return None
    if name == "json":
        return serializers.JSONSerializer()
    if name == "msgpack":
        try:
            return serializers.MsgpackSerializer()
        except ImportError as exc:
            raise CommandError("--serializer msgpack needs msgpack: pip install 'redset[msgpack]' (%s)" % exc)
    raise CommandError("unknown serializer %r" % name, 2)  # pragma: no cover - click checks the choice


class _Group(click.Group):
    """One line for an unknown command, like every other usage error."""

    def resolve_command(self, ctx: click.Context, args: List[str]) -> Any:
        name = args[0] if args else ""
        if args and self.get_command(ctx, name) is None and not name.startswith("-"):
            raise click.UsageError("unknown command %r (see 'redset --help')" % name, ctx)
        return super().resolve_command(ctx, args)


def _print_version(ctx: click.Context, param: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_line())
        ctx.exit(0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", "-V", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version, and whether the compiled extension is in use (and why not).")
def cli() -> None:
    """redset: Redis sorted sets for sharing work (dedup, priority, time, schedule).

    Commands that read or change sets take --url (or REDSET_URL); NAMES may
    be glob patterns (found with SCAN, never KEYS).
    """


# -- options shared by the set commands ------------------------------------------------
def url_option(f: Any) -> Any:
    return click.option("--url", envvar="REDSET_URL", default=DEFAULT_URL, show_default=True,
                        help="The server (also REDSET_URL).")(f)


def kind_option(f: Any) -> Any:
    return click.option("--kind", type=click.Choice(["auto", "time", "sorted", "scheduled"]), default="auto",
                        show_default=True,
                        help="What the scores mean: add times (TimeSortedSet), priorities (SortedSet), due "
                             "times (ScheduledSet); auto: scores from 1e9 (2001) on are times, items in the "
                             "future not due yet; lower ones are priorities.")(f)


def serializer_option(f: Any) -> Any:
    return click.option("--serializer", type=click.Choice(["none", "json", "msgpack"]), default="none",
                        show_default=True, help="How items are stored (none: as strings).")(f)


def shards_option(f: Any) -> Any:
    return click.option("--shards", type=click.IntRange(1, 256), default=1, show_default=True,
                        help="The set's number of shards (as its code makes it).")(f)


def one_set_options(f: Any) -> Any:
    """The options of a command on one set: --url, --kind, --serializer, --shards."""
    return url_option(kind_option(serializer_option(shards_option(f))))


def _type_of(client: Any, key: str) -> str:
    kind = client.type(key)
    return kind.decode() if isinstance(kind, bytes) else str(kind)


def _open_set(client: Any, name: str, kind: str, serializer: Any = None, shards: int = 1,
              must_exist: bool = True) -> Any:
    """The set ``name``, after checking its key (or its shards' keys) is a sorted set."""
    s = _kinds()[kind](client, name, serializer=serializer, shards=shards)
    keys = [x.name for x in s.shard_sets] if shards > 1 else [name]
    types = [_type_of(client, key) for key in keys]
    for key, found in zip(keys, types):
        if found not in ("zset", "none"):
            raise CommandError("%r is a %s, not a sorted set" % (key, found))
    if must_exist and all(t == "none" for t in types) and not _has_companions(client, s):
        raise CommandError("no set named %r at this server%s" % (
            name, "" if shards == 1 else " (looked for its %d shards)" % shards))
    return s


def _has_companions(client: Any, s: Any) -> bool:
    """A set whose items are all in flight or dead still exists."""
    sets = s.shard_sets or [s]
    return any(client.exists(x._lease_keys[1], x._lease_keys[4]) for x in sets)


def _sets(client: Any, names: Sequence[str], kind: str, shards: int) -> List[Any]:
    from redset.stats import find_set_names

    out: List[Any] = []
    for name in names or ["*"]:
        if _GLOB & set(name) and shards == 1:
            found = sorted(find_set_names(client, name))
            if not found and names:
                raise CommandError("no set matches %r at this server" % name)
            out.extend(_kinds()[kind](client, n) for n in found)
        else:
            out.append(_open_set(client, name, kind, shards=shards))
    return out


def _stats_of(s: Any, kind: str) -> Any:
    from redset.stats import guess_kind

    st = s.stats()
    return guess_kind(st) if kind == "auto" else st


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return "%.1fs" % seconds
    if seconds < 7200:
        return "%.1fm" % (seconds / 60)
    return "%.1fh" % (seconds / 3600)


def _due_in(when: Optional[float], now: float) -> str:
    return "-" if when is None else "in " + _age(max(0.0, when - now))


def _table(rows: List[Any], rates: Optional[Dict[str, float]] = None) -> Any:
    from rich.table import Table

    table = Table(box=None if rates is None else None, header_style="bold")
    for column in ("set", "length", "due", "oldest age", "next due", "in flight", "oldest lease", "dead"):
        table.add_column(column, justify="left" if column == "set" else "right")
    if rates is not None:
        table.add_column("change/s", justify="right")
    for st in rows:
        cells = [st.name, str(st.length), str(st.due), _age(st.oldest_age), _due_in(st.next_due, st.time),
                 str(st.in_flight), _age(st.oldest_lease_age if st.in_flight else None), str(st.dead)]
        if rates is not None:
            rate = rates.get(st.name)
            cells.append("-" if rate is None else "%+.1f" % rate)
        table.add_row(*cells)
    return table


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


@cli.command(hidden=True)
def version() -> None:
    """The same as --version."""
    click.echo(version_line())


# -- stats / watch ---------------------------------------------------------------------
@cli.command()
@click.argument("names", nargs=-1)
@url_option
@kind_option
@shards_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per set, in a list.")
def stats(names: Tuple[str, ...], url: str, kind: str, shards: int, as_json: bool) -> None:
    """Figures of sets: length, due, age of the oldest due item, next due time,
    in flight, oldest lease, dead letters. NAMES: set names or patterns
    (default: every sorted set)."""
    client = check_url(url)
    found = [_stats_of(s, kind) for s in _sets(client, names, kind, shards)]
    if as_json:
        click.echo(json.dumps([st.as_dict() for st in found], indent=1))
        return
    if not found:
        click.echo("no sorted sets at %s" % url, err=True)
        return
    _console().print(_table(found))


@cli.command()
@click.argument("names", nargs=-1)
@url_option
@kind_option
@shards_option
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many refreshes.")
def watch(names: Tuple[str, ...], url: str, kind: str, shards: int, interval: float, count: Optional[int]) -> None:
    """A live view of sets (Ctrl-C ends it): the figures of `stats` and how
    fast each set's length changes (items/s over the last 5 seconds)."""
    from rich.live import Live

    client = check_url(url)
    sets = _sets(client, names, kind, shards)
    history: Dict[str, List[Tuple[float, int]]] = {}
    shown = 0

    def frame() -> Any:
        nonlocal sets
        if not names or any(_GLOB & set(n) for n in names):
            sets = _sets(client, names, kind, shards)  # patterns: sets come and go
        found = [_stats_of(s, kind) for s in sets]
        rates = {}
        for st in found:
            seen = history.setdefault(st.name, [])
            seen.append((st.time, st.length))
            while len(seen) > 2 and seen[-1][0] - seen[1][0] >= RATE_WINDOW:
                seen.pop(0)  # keep about RATE_WINDOW seconds
            if len(seen) > 1 and seen[-1][0] > seen[0][0]:
                rates[st.name] = (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])
        from rich.console import Group
        from rich.text import Text

        title = Text("redset watch %s  every %gs  %s" % (url, interval, time.strftime("%H:%M:%S")), style="bold")
        return Group(title, _table(found, rates))

    try:
        with Live(frame(), console=_console(), auto_refresh=False) as live:
            shown = 1
            while count is None or shown < count:
                time.sleep(interval)
                live.update(frame(), refresh=True)
                shown += 1
    except KeyboardInterrupt:
        pass  # how watch is meant to end


# -- peek / add / drain / requeue-dead --------------------------------------------------
def _item_json(item: Any) -> str:
    if isinstance(item, bytes):
        item = item.decode("utf-8", "backslashreplace")
    try:
        return json.dumps(item, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(repr(item), ensure_ascii=False)


@cli.command()
@click.argument("name")
@one_set_options
@click.option("-n", "num", type=click.IntRange(1), default=10, show_default=True, help="How many items.")
def peek(name: str, url: str, kind: str, serializer: str, shards: int, num: int) -> None:
    """The lowest-scored items of a set, with their scores, without removing them."""
    from rich.table import Table

    client = check_url(url)
    s = _open_set(client, name, kind, _serializer(serializer), shards)
    rows: List[Tuple[float, bytes]] = []
    for part in s.shard_sets or [s]:
        for member, score in client.zrange(part.name, 0, num - 1, withscores=True):
            rows.append((float(score), member if isinstance(member, bytes) else str(member).encode()))
    rows.sort(key=lambda r: r[0])
    now = time.time()
    table = Table(box=None, header_style="bold")
    for column in ("#", "score", "item") + (("due",) if kind == "scheduled" else ()):
        table.add_column(column, justify="left" if column == "item" else "right")
    for i, (score, member) in enumerate(rows[:num]):
        try:
            shown = _item_json(s._load(member))
        except Exception as exc:  # noqa: BLE001 - show what is there
            shown = "%r (cannot load: %s)" % (member[:80], exc)
        cells = [str(i), "%.6f" % score if score != int(score) else "%d" % score, shown]
        if kind == "scheduled":
            cells.append("yes" if score <= now else "in " + _age(score - now))
        table.add_row(*cells)
    _console().print(table)


def _read_items(stream: IO[str], fmt: str) -> Iterator[Tuple[int, Any]]:
    """``(line number, item)`` of every non-empty line."""
    for lineno, line in enumerate(stream, 1):
        text = line.rstrip("\r\n")
        if fmt == "lines":
            if text:
                yield lineno, text
            continue
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except ValueError as exc:
            raise CommandError("line %d is not JSON: %s" % (lineno, exc)) from None


@cli.command()
@click.argument("name")
@click.argument("source", default="-", type=click.File("r", encoding="utf-8", lazy=True))
@one_set_options
@click.option("--format", "fmt", type=click.Choice(["auto", "lines", "jsonl"]), default="auto", show_default=True,
              help="Each line is an item (lines), or a JSON value (jsonl); auto: jsonl for *.jsonl.")
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Items per add_many call.")
def add(name: str, source: IO[str], url: str, kind: str, serializer: str, shards: int, fmt: str, batch: int) -> None:
    """Bulk-add items from SOURCE (a file, or - for stdin) to a set, with a
    progress bar; items already in the set keep their score (ZADD NX)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if fmt == "auto":
        fmt = "jsonl" if getattr(source, "name", "").endswith(".jsonl") else "lines"
    client = check_url(url)
    s = _open_set(client, name, kind, _serializer(serializer), shards, must_exist=False)
    items = _read_items(source, fmt)
    read = added = 0
    err = _console(stderr=True)
    columns = [SpinnerColumn(), TextColumn("adding to %s" % name), BarColumn(), MofNCompleteColumn(),
               TextColumn("items"), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("add", total=None)
        while True:
            chunk: List[Tuple[int, Any]] = []
            try:
                for item in items:
                    chunk.append(item)
                    if len(chunk) >= batch:
                        break
            except CommandError as exc:  # a bad line: its batch is not sent
                raise CommandError("%s; the %d items before its batch were added (%d new), nothing after"
                                   % (exc, read, added)) from None
            if not chunk:
                break
            try:
                added += s.add_many([item for _, item in chunk])
            except (TypeError, ValueError) as exc:
                index = getattr(exc, "index", None)
                if index is None:
                    raise CommandError("cannot add the items: %s; %d items were added before" % (exc, read)) from None
                raise CommandError("line %d: %s; the %d items before it were added" % (
                    chunk[index][0], exc, read + getattr(exc, "sent", 0))) from None
            read += len(chunk)
            progress.update(task, completed=read)
    click.echo("%s: read %d items, %d new, %d already there; %d items in the set now"
               % (name, read, added, read - added, s.count()))


@cli.command()
@click.argument("name")
@one_set_options
@click.option("--batch", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Items per take.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after this many items.")
@click.option("--lease", type=click.FloatRange(1, 86400), default=60.0, show_default=True,
              help="Seconds each batch is leased while it is written.")
def drain(name: str, url: str, kind: str, serializer: str, shards: int, batch: int, limit: Optional[int],
          lease: float) -> None:
    """Take every item (ScheduledSet: every due item) out of a set and write
    them to stdout as JSON lines, lowest score first.

    Each batch is leased, written and flushed, then acked: if the output
    fails (a closed pipe) or the command is stopped, the items not written
    go back to the set at their scores; nothing is lost on the way.
    """
    client = check_url(url)
    s = _open_set(client, name, kind, _serializer(serializer), shards)
    out = sys.stdout
    done = 0
    while limit is None or done < limit:
        want = batch if limit is None else min(batch, limit - done)
        leases = s.take(want, lease=lease)
        if not leases:
            break
        written = 0
        try:
            for held in leases:
                out.write(_item_json(held.item) + "\n")
                written += 1
            out.flush()
        except BaseException as exc:
            # Not known to be written: back to the set (uncharged), then stop.
            _release(s, leases)
            if isinstance(exc, BrokenPipeError):
                raise _OutputClosed() from None
            raise
        s.ack_many(leases)
        done += written


class _OutputClosed(Exception):
    """stdout was closed under a command (``redset drain q | head``); not an
    OSError, so that click leaves it to :func:`main` (exit status 141)."""


def _release(s: Any, leases: List[Any]) -> None:
    from redset._core import leasing

    for part, group in _by_set(leases).items():
        part._run(leasing.release_many(part, group))


def _by_set(leases: List[Any]) -> Dict[Any, List[Any]]:
    groups: Dict[Any, List[Any]] = {}
    for held in leases:
        groups.setdefault(held._set, []).append(held)
    return groups


@cli.command("requeue-dead")
@click.argument("name")
@url_option
@kind_option
@shards_option
@click.option("-n", "num", type=click.IntRange(1), default=1000, show_default=True,
              help="At most this many dead letters.")
def requeue_dead(name: str, url: str, kind: str, shards: int, num: int) -> None:
    """Move dead letters back into their set, at their original scores."""
    client = check_url(url)
    s = _open_set(client, name, kind, shards=shards)
    moved = s.requeue_dead(num)
    click.echo("%s: %d dead letters moved back; %d left" % (name, moved, s.dead_count()))


# -- metrics ---------------------------------------------------------------------------
@cli.command()
@click.argument("patterns", nargs=-1)
@url_option
@kind_option
@click.option("--port", type=click.IntRange(1, 65535), default=9108, show_default=True,
              help="Port of the /metrics endpoint.")
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to listen on.")
def metrics(patterns: Tuple[str, ...], url: str, kind: str, port: int, addr: str) -> None:
    """Serve Prometheus metrics of the sets matching PATTERNS (default: every
    sorted set) until Ctrl-C."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server

        from redset.prometheus import RedsetCollector
    except ImportError:
        raise CommandError("redset metrics needs prometheus-client: pip install 'redset[prometheus]'") from None
    client = check_url(url)
    registry = CollectorRegistry()
    cls = None if kind == "auto" else _kinds()[kind]  # None: the collector guesses per set
    registry.register(RedsetCollector(client, {p: cls for p in (patterns or ("*",))}))
    try:
        started = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise CommandError("cannot listen on %s:%d: %s" % (addr, port, exc)) from None
    # prometheus-client >= 0.17 returns (server, thread); older ones None.
    httpd = started[0] if isinstance(started, tuple) else None
    try:
        click.echo("serving metrics of %s on http://%s:%d/metrics; Ctrl-C stops" % (url, addr, port))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        # Stop serving before the interpreter winds down, rather than leave
        # the server's thread to be frozen mid-request at exit.
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        client.close()


# -- commands with their own options ----------------------------------------------------
_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@cli.command(context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def server(args: Tuple[str, ...]) -> None:
    """Run an embedded Valkey on 127.0.0.1:6379 until Ctrl-C (to try redset)."""
    raise SystemExit(server_main(list(args)))


@cli.command(context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: Tuple[str, ...]) -> None:
    """Compare redset with redis-py by hand and the raw-socket limit."""
    from redset import bench as bench_module

    raise SystemExit(bench_module.main(list(args)))


@cli.command(context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: Tuple[str, ...]) -> None:
    """Producers and consumers in separate processes, checked end to end."""
    from redset import demo as demo_module

    raise SystemExit(demo_module.main(list(args)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a ``redset`` command; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        if not args:
            with click.Context(cli, info_name="redset") as ctx:
                click.echo(cli.get_help(ctx))
            return 2
        try:
            cli.main(args=args, prog_name="redset", standalone_mode=False)
        except _OutputClosed:
            raise BrokenPipeError() from None
        except click.UsageError as exc:
            raise CommandError(exc.format_message(), 2) from None
        except click.ClickException as exc:
            raise CommandError(exc.format_message(), exc.exit_code or 1) from None
        except click.exceptions.Exit as exc:
            return int(exc.exit_code or 0)
        except click.Abort:
            raise KeyboardInterrupt from None
        except SystemExit as exc:
            return int(exc.code or 0) if not isinstance(exc.code, str) else 1
        return 0

    return run_command("redset", body)
