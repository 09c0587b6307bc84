"""`runhours credentials`: one broker identity per machine (add, rotate, revoke, list)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from common.settings import RunhoursSettings
from runhours.commands._common import ConfigOption, console, err_console, load
from runhours.commands._tables import Col, fit_table
from runhours.security import SecurityDir

app = typer.Typer(
    help="Broker identities, one per machine: `add` writes the machine's password entry "
    "(or a client certificate) and its edge settings file, and prints that file; the ACL "
    "(deploy/mosquitto/acl) lets each identity publish only its own machine's telemetry and "
    "status. Works on the security directory of `runhours services up --secure` "
    "(<data_dir>/security) or the one given with --dir. See docs/security.md.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Security directory (default: <data_dir>/security, made by "
        "`runhours services up --secure` or `runhours credentials init`).",
        file_okay=False,
    ),
]
MachineOption = Annotated[
    str, typer.Option("--machine", "-m", help="The machine, as SITE/LINE/MACHINE.")
]
CertOption = Annotated[
    bool | None,
    typer.Option(
        "--cert/--password",
        help="A client certificate (mutual TLS; its common name is SITE/LINE/MACHINE) or a "
        "password (default: a password; rotate keeps the kind it had).",
        show_default=False,
    ),
]
CaPathOption = Annotated[
    str | None,
    typer.Option(help="Where the device keeps the CA certificate (default: this host's path)."),
]
BrokerHostOption = Annotated[
    str | None,
    typer.Option(help="The broker's name as the device reaches it (must be in its certificate)."),
]
OutOption = Annotated[
    bool,
    typer.Option(
        "--print/--no-print",
        help="Print the machine's settings file (it holds its password) after writing it.",
    ),
]


def _security(config: Path | None, directory: Path | None) -> SecurityDir:
    root = directory or load(RunhoursSettings, config).data_dir / "security"
    return SecurityDir(root).require()


def _machines(config: Path | None, directory: Path | None):  # type: ignore[no-untyped-def]
    from runhours.security.credentials import Machines

    return Machines(_security(config, directory))


def _ref(text: str):  # type: ignore[no-untyped-def]
    from runhours.security.credentials import parse_machine

    return parse_machine(text)


def _issue(
    machine: str,
    cert: bool | None,
    ca_path: str | None,
    broker_host: str | None,
    show: bool,
    config: Path | None,
    directory: Path | None,
    *,
    rotate: bool,
) -> None:
    machines = _machines(config, directory)
    ref = _ref(machine)
    made = machines.add(
        ref,
        kind=None if cert is None else "certificate" if cert else "password",
        replace=rotate,
        ca_path=ca_path,
        broker_host=broker_host,
    )
    verb = "rotated" if rotate else "added"
    err_console.print(
        f"{verb} {made.kind} identity {made.user}; settings for its edge agent: "
        f"{made.settings_file} (mode 0600)\n{machines.reload()}",
        highlight=False,
    )
    if show:
        # The one place a secret is shown, once, on purpose: it is this command's output.
        print(made.settings_file.read_text(), end="")


@app.command()
def init(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="Where to create it (the Docker deployment's: ./secrets).",
            file_okay=False,
        ),
    ],
    compose: Annotated[
        bool,
        typer.Option(
            "--compose",
            help="For docker-compose.yml: compose service names, an env file of passwords per "
            "container under <dir>/compose (mode 0600).",
        ),
    ] = False,
    broker_name: Annotated[
        list[str] | None,
        typer.Option(
            "--broker-name",
            help="A name or address edge devices use to reach the broker (repeatable); it goes "
            "into the broker's certificate. The first one goes into machines' settings.",
        ),
    ] = None,
    database: Annotated[str, typer.Option(help="The InfluxDB database.")] = "runhours",
    fleet: Annotated[
        int,
        typer.Option(
            min=0, help="Also give the first N machines of `runhours simulate` an identity."
        ),
    ] = 0,
    site: Annotated[str, typer.Option(help="Site id of those simulated machines.")] = "plant1",
) -> None:
    """Create a security directory: a local CA, the broker's certificate, the services'
    passwords and a console operator `admin`. Run again to complete or update it (e.g.
    new --broker-name); what exists is kept.

    `runhours services up --secure` does this by itself for the local services.
    """
    from datetime import UTC, datetime

    from runhours.security.compose import init_compose
    from runhours.security.layout import Meta
    from simulators import fleet as simulated
    from wire import MachineRef

    security = SecurityDir(directory)
    names = broker_name or []
    if compose:
        specs = simulated(fleet, start=datetime(2026, 1, 1, tzinfo=UTC), site=site)
        refs = [MachineRef(s.site, s.line, s.machine) for s in specs]
        created = init_compose(security, public_names=names, database=database, fleet=refs)
    else:
        meta = security.meta() if security.exists else Meta(influx_db=database)
        if names:
            meta.broker_host = names[0]
            meta.broker_names = list(dict.fromkeys([*meta.broker_names, *names]))
        created = security.init(meta)
    for line in created:
        console.print(f"created {line}", markup=False, highlight=False)
    console.print(
        f"{security.root}: passwords in {security.secrets_file.name} (mode 0600); machines: "
        f"runhours credentials add --dir {directory} --machine SITE/LINE/MACHINE",
        highlight=False,
    )


def _issuing(*, rotate: bool, doc: str) -> Callable[..., None]:
    """The `add` or `rotate` command: the same options; `rotate` replaces an identity."""

    def command(
        machine: MachineOption,
        cert: CertOption = None,
        ca_path: CaPathOption = None,
        broker_host: BrokerHostOption = None,
        show: OutOption = True,
        config: ConfigOption = None,
        directory: DirOption = None,
    ) -> None:
        _issue(machine, cert, ca_path, broker_host, show, config, directory, rotate=rotate)

    command.__doc__ = doc
    return command


add = app.command("add")(
    _issuing(
        rotate=False,
        doc="""Give a machine its own broker identity and print its edge settings.

    Writes the password entry (or issues a client certificate), the machine's settings
    file <dir>/edge/SITE.LINE.MACHINE.toml (mode 0600), and reloads a local broker. Copy
    the file to the device and run `runhours edge --config <file>` there.
    """,
    )
)
rotate = app.command("rotate")(
    _issuing(
        rotate=True,
        doc="""Replace a machine's identity: the old password stops working (the broker reloads
    and disconnects it), an old certificate is revoked.""",
    )
)


@app.command()
def revoke(
    machine: MachineOption,
    config: ConfigOption = None,
    directory: DirOption = None,
) -> None:
    """Remove a machine's identity: its password entry (the broker disconnects it at once)
    or its certificate (added to the CRL: refused from its next connection on)."""
    machines = _machines(config, directory)
    ref = _ref(machine)
    gone = machines.revoke(ref)
    console.print(f"revoked {gone.kind} identity {gone.user}\n{machines.reload()}", highlight=False)


@app.command("list")
def list_(config: ConfigOption = None, directory: DirOption = None) -> None:
    """List the machines that have an identity, and the service accounts (no secrets)."""
    from runhours.security.layout import ROLES

    machines = _machines(config, directory)
    rows = [
        [entry.user, entry.kind, entry.created, str(entry.settings_file)]
        for entry in machines.list()
    ]
    rows += [
        [role.name, "service (password)", "", str(machines.security.role_file(role.name))]
        for role in ROLES
        if role.mqtt
    ]
    cols = [Col("identity"), Col("kind", figure=False), Col("created", drop=1)]
    cols.append(Col("settings file", figure=False))
    console.print(fit_table(console, cols, rows))
