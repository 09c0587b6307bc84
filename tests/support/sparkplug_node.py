"""A Sparkplug B edge node driven by pysparkplug (third-party), for tests/ingest/test_sparkplug.py.

Runs under .venv-sparkplug (pysparkplug needs paho-mqtt 1.x), not under pytest. Reads one
command per line on stdin and prints one JSON event per line on stdout:

  birth                      connect (NBIRTH with bdSeq), register device m1 (DBIRTH, aliases)
  data T0 N                  N DDATA messages, alias only, metric timestamps T0 + i*1000 ms
  named T                    one DDATA by name through pysparkplug's public update_device
  skip                       burn one seq (a message lost on the way)
  unknown T                  DDATA with alias 99, which no birth declared
  ddeath                     deregister m1 (DDEATH)
  ndeath                     disconnect cleanly (pysparkplug's NDEATH)
An NCMD prints {"event": "ncmd", "metrics": {...}}.
"""

import json
import sys
import threading
import time

import pysparkplug as spb

host, port, group, node_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()


def emit(**event):
    with lock:
        print(json.dumps(event), flush=True)


def on_ncmd(_node, message):
    metrics = {m.name: m.value for m in message.payload.metrics}
    emit(event="ncmd", topic=str(message.topic), metrics=metrics)


D = spb.DataType
# name, alias, datatype, value for sample i
METRICS = [
    ("state", 1, D.STRING, lambda i: ("running", "idle", "fault")[i % 3]),
    ("Spindle/Speed rpm", 2, D.FLOAT, lambda i: 1000.5 + i),
    ("bearing_temp_c", 3, D.DOUBLE, lambda i: 40.125 + i / 8),
    ("offset_mm", 4, D.INT16, lambda i: -5 - i),
    ("run_seconds_total", 5, D.UINT64, lambda i: 3_600_000 + 10 * i),
    ("door_open", 6, D.BOOLEAN, lambda i: i % 2 == 0),
]

client = spb.Client(client_id=f"spb-{node_id}")
node = spb.EdgeNode(
    group,
    node_id,
    [
        spb.Metric(
            timestamp=spb.get_current_timestamp(),
            name="supply_voltage_v",
            datatype=D.DOUBLE,
            value=230.5,
        )
    ],
    client=client,
    cmd_callback=on_ncmd,
)
device = spb.Device(
    "m1",
    [
        spb.Metric(
            timestamp=spb.get_current_timestamp(),
            name=name,
            alias=alias,
            datatype=dt,
            value=value(0),
        )
        for name, alias, dt, value in METRICS
    ],
)


def ddata(metrics, timestamp):
    topic = spb.Topic(
        message_type=spb.MessageType.DDATA, group_id=group, edge_node_id=node_id, device_id="m1"
    )
    payload = spb.DData(timestamp=timestamp, seq=node._seq, metrics=tuple(metrics))
    client.publish(
        spb.Message(topic=topic, payload=payload, qos=spb.QoS.AT_MOST_ONCE, retain=False),
        include_dtypes=False,
    )


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    command, args = words[0], [int(w) for w in words[1:]]
    if command == "birth":
        node.connect(host, port=port, blocking=False)
        deadline = time.monotonic() + 10
        while not node._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        node.register(device)
    elif command == "data":
        t0, n = args
        for i in range(n):
            ts = t0 + i * 1000
            ddata(
                [
                    spb.Metric(timestamp=ts, name=None, alias=alias, datatype=dt, value=value(i))
                    for _name, alias, dt, value in METRICS
                ],
                ts,
            )
    elif command == "named":
        (ts,) = args
        node.update_device(
            "m1", [spb.Metric(timestamp=ts, name="bearing_temp_c", datatype=D.DOUBLE, value=99.5)]
        )
    elif command == "skip":
        node._seq  # noqa: B018 (a seq number used by no message)
    elif command == "unknown":
        (ts,) = args
        ddata([spb.Metric(timestamp=ts, name=None, alias=99, datatype=D.DOUBLE, value=1.0)], ts)
    elif command == "ddeath":
        node.deregister("m1")
    elif command == "ndeath":
        node.disconnect()
    emit(event="done", command=command)
