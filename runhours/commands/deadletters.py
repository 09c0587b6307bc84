"""`runhours deadletters`: list the messages the ingest could not store, and replay them."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands._tables import Col, fit_table

if TYPE_CHECKING:
    from ingest.deadletter import DeadLetter

app = typer.Typer(
    help="Dead letters: messages the ingest refused (not the wire contract, too large, "
    "rejected by InfluxDB), each stored under <data_dir>/deadletters/ before its original "
    "was acknowledged, with the reason and the original bytes. List them, fix the cause, "
    "then replay them.",
    no_args_is_help=True,
)

SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only those received since: RFC 3339 with a zone, 'now-7d'."),
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Only those whose reason contains this text.")
]


class ListFormat(StrEnum):
    table = "table"
    json = "json"


def _select(config: ConfigOption, since: str | None, reason: str | None):  # type: ignore[no-untyped-def]
    from common.times import parse_time
    from ingest import IngestSettings
    from ingest.deadletter import DeadLetterStore

    settings = load(IngestSettings, config)
    store = DeadLetterStore(settings.data_dir / "deadletters")
    start = parse_time(since, "--since") if since else None
    letters = [
        d
        for d in store.letters()
        if (start is None or d.received_at >= start)
        and (reason is None or reason.lower() in d.reason.lower())
    ]
    return settings, store, letters


@app.command("list")
def list_(
    since: SinceOption = None,
    reason: ReasonOption = None,
    fmt: Annotated[
        ListFormat,
        typer.Option("--format", "-f", help="table, or json (with the original payload)."),
    ] = ListFormat.table,
    config: ConfigOption = None,
) -> None:
    """The stored dead letters, oldest first, one per distinct message (a message refused
    again on redelivery is counted, not repeated), and whether each was replayed."""
    _, store, letters = _select(config, since, reason)
    replayed = store.replayed()
    if fmt == ListFormat.json:
        console.print_json(json.dumps([_json(d, d.id in replayed) for d in letters]))
        return
    if not letters:
        console.print(f"no dead letters in {store.directory}", highlight=False)
        return
    cols = [
        Col("id"),
        Col("received", right=True),
        Col("topic", figure=False),
        Col("bytes", right=True, drop=1),
        Col("reason", figure=False),
        Col("replayed", drop=2),
    ]
    rows = [
        [
            d.id,
            f"{d.received_at:%m-%d %H:%M:%S}Z",
            d.topic.removeprefix("runhours/v1/"),
            f"{len(d.payload):,}",
            d.reason + (f" (×{d.count})" if d.count > 1 else ""),
            "yes" if d.id in replayed else "",
        ]
        for d in letters
    ]
    console.print(fit_table(console, cols, rows))


def _json(letter: DeadLetter, replayed: bool) -> dict[str, object]:
    try:
        payload: object = letter.payload.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        import base64

        payload, encoding = base64.b64encode(letter.payload).decode("ascii"), "base64"
    return {
        "id": letter.id,
        "received_at": letter.received_at.isoformat(),
        "worker": letter.worker,
        "topic": letter.topic,
        "reason": letter.reason,
        "count": letter.count,
        "replayed": replayed,
        "payload": payload,
        "payload_encoding": encoding,
    }


@app.command()
def replay(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Only these ids (repeatable).")
    ] = None,
    since: SinceOption = None,
    reason: ReasonOption = None,
    again: Annotated[
        bool, typer.Option("--again", help="Also those replayed before (harmless: same points).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decode only: say what would be written.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Decode the dead letters again with today's settings (e.g. a raised
    ingest.max_message_bytes) and write the valid ones to InfluxDB, with the markers that
    make rollups recompute. Each replayed id is recorded and skipped next time. Exit code 1
    when some still fail."""
    from ingest.replay import replay_deadletters
    from store import InfluxClient

    settings, store, letters = _select(config, since, reason)
    if ids:
        wanted = set(ids)
        letters = [d for d in letters if d.id in wanted]
        if missing := wanted - {d.id for d in letters}:
            fail(f"no such dead letter: {', '.join(sorted(missing))}")
    with InfluxClient.from_settings(settings) as client:
        report = replay_deadletters(
            store,
            client,
            letters,
            max_message_bytes=settings.ingest.max_message_bytes,
            again=again,
            dry_run=dry_run,
        )
    verb = "would replay" if dry_run else "replayed"
    console.print(
        f"{verb} {len(report.replayed)} dead letter(s) ({report.points} points); "
        f"{len(report.failing)} still failing; {report.skipped} replayed before",
        highlight=False,
    )
    for letter, why in report.failing:
        console.print(f"  {letter.id} {letter.topic}: {why}", highlight=False)
    if report.failing:
        raise typer.Exit(1)
