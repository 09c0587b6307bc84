"""The simulated fleet as an OPC UA server, with a small information model.

Under ``Objects`` one object per machine (browse name = machine id) holds read-only
variables, node ids ``ns=2;s=<machine>.<variable>`` (namespace ``urn:runhours:simulator``):

| variable | data type | content |
| --- | --- | --- |
| ``State`` | String | ``off``, ``idle``, ``running``, ``fault`` or ``maintenance`` |
| ``OperationDuration`` | Duration (Double, ms) | running time so far, as OPC UA DI's ``IOperationCounterType`` |
| one per value (``spindle_speed_rpm`` …) | Double | the kind's values, named with their unit |

Every reading is written with its own time as the source timestamp, all variables of a
reading at once, so a subscriber sees each reading whole. ``opcua_nodes(machine, kind)``
lists the node ids (the example edge configs are rendered from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds

from simulators.live import LiveFleet
from simulators.machine import RUN_COUNTER, Reading
from simulators.signals import MODELS
from simulators.spec import MachineKind

NAMESPACE = "urn:runhours:simulator"
NS = 2  # the first namespace a server registers after its own
STATE = "State"
OPERATION_DURATION = "OperationDuration"
DURATION = ua.NodeId.from_string("i=290")  # the Duration data type (Double, milliseconds)


def node_id(machine: str, variable: str) -> str:
    return f"ns={NS};s={machine}.{variable}"


def opcua_nodes(machine: str, kind: MachineKind) -> dict[str, str]:
    """Variable → node id of one machine: ``State``, ``OperationDuration``, its values."""
    names = [STATE, OPERATION_DURATION, *MODELS[kind].names]
    return {name: node_id(machine, name) for name in names}


class _Users(UserManager):
    """Who may read: anyone (``login`` None, loopback only), or one account. Nobody gets
    the admin role (the variables are read-only for everyone)."""

    def __init__(self, login: tuple[str, str] | None) -> None:
        self._login = login

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if self._login is None or (username, password) == self._login:
            return User(role=UserRole.User, name=username)
        return None


@dataclass(frozen=True)
class OpcuaSecurity:
    """Serve only signed-and-encrypted sessions with this certificate, and one account."""

    certificate: Path
    private_key: Path
    username: str
    password: str


class FleetServer:
    """An asyncua server whose variables follow a ``LiveFleet``."""

    def __init__(self, fleet: LiveFleet, server: Server, variables: list[dict[str, ua.NodeId]]):
        self.fleet = fleet
        self.server = server
        self._variables = variables
        self.written = [0] * len(fleet.sims)

    async def on_readings(self, index: int, readings: list[Reading]) -> None:
        """Write every new reading of machine ``index``, all its variables at once."""
        spec = self.fleet.specs[index]
        nodes = self._variables[index]
        aspace = self.server.iserver.aspace
        for reading in readings:
            sample = reading.sample
            ts = sample.ts.astimezone(UTC).replace(tzinfo=None)  # OPC UA DateTime is UTC
            now = datetime.now(UTC).replace(tzinfo=None)
            updates: list[tuple[ua.NodeId, ua.Variant]] = [
                (nodes[STATE], ua.Variant(sample.state or "off", ua.VariantType.String)),
                (
                    nodes[OPERATION_DURATION],
                    ua.Variant(
                        reading.counters.get(RUN_COUNTER, 0.0) * 1000, ua.VariantType.Double
                    ),
                ),
            ]
            for name in MODELS[spec.kind].names:
                if name in sample.values:
                    updates.append(
                        (nodes[name], ua.Variant(sample.values[name], ua.VariantType.Double))
                    )
            for nodeid, variant in updates:
                value = ua.DataValue(variant)
                value.SourceTimestamp, value.ServerTimestamp = ts, now  # type: ignore[assignment]
                await aspace.write_attribute_value(nodeid, AttributeIds.Value, value)
            self.written[index] += 1

    async def stop(self) -> None:
        await self.server.stop()


async def start_opcua_server(
    fleet: LiveFleet, host: str, port: int, security: OpcuaSecurity | None = None
) -> FleetServer:
    """Start serving ``fleet`` at ``opc.tcp://host:port/`` (anonymous and unencrypted, or
    only ``security``'s way)."""
    login = None if security is None else (security.username, security.password)
    server = Server(user_manager=_Users(login))
    await server.init()
    server.set_endpoint(f"opc.tcp://{host}:{port}/")
    server.set_server_name("runhours simulated fleet")
    if security is None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    else:
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_security_IDs(["Username"])
        await server.load_certificate(str(security.certificate))
        await server.load_private_key(security.private_key)
    idx = await server.register_namespace(NAMESPACE)
    if idx != NS:
        raise RuntimeError(f"namespace {NAMESPACE} got index {idx}, expected {NS}")
    variables: list[dict[str, ua.NodeId]] = []
    for spec in fleet.specs:
        machine = await server.nodes.objects.add_object(
            ua.NodeId.from_string(f"ns={idx};s={spec.machine}"), f"{idx}:{spec.machine}"
        )
        nodes: dict[str, ua.NodeId] = {}
        for name in opcua_nodes(spec.machine, spec.kind):
            initial: ua.Variant
            if name == STATE:
                initial = ua.Variant("off", ua.VariantType.String)
            else:
                initial = ua.Variant(0.0, ua.VariantType.Double)
            var = await machine.add_variable(
                ua.NodeId.from_string(node_id(spec.machine, name)),
                f"{idx}:{name}",
                initial,
                datatype=DURATION if name == OPERATION_DURATION else None,
            )
            nodes[name] = var.nodeid
        variables.append(nodes)
    await server.start()
    return FleetServer(fleet, server, variables)
