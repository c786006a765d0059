#!/usr/bin/python3
"""Request ids echoed by a real sweepd: integral ids are printed by the daemon
itself, other ids by cJSON. Each id form must come back equal to what was
sent, in an ok reply, an error reply and a lease reply, whose integer fields
are printed the same way. A reply larger than the server's 4 KiB print buffer
must come back whole."""
import json

import harness
from harness import Client, Daemon

# Raw JSON of the id as sent, and the value json.loads must read back.
IDS = [
    (b"7", 7),
    (b"0", 0),
    (b"-3", -3),
    (b"9007199254740992", 9007199254740992),         # 2^53, the largest exact integer
    (b"9007199254740993", 9007199254740992),         # parsed into a double as 2^53
    (b"2.5", 2.5),
    (b"1e20", 1e20),
    (b"1e300", 1e300),
    (b"-0.125", -0.125),
    (b'"abc"', "abc"),
    (b'"7"', "7"),
]


def send_with_id(client, raw_id, op, extra=b""):
    client.send_raw(b'{"id":' + raw_id + b',"op":"' + op + b'"' + extra + b"}\n")
    return json.loads(client.recv_line().decode())


def test_ids_in_ok_and_error_replies():
    with Daemon() as d, Client(d.socket_path) as c:
        for raw_id, expected in IDS:
            reply = send_with_id(c, raw_id, b"list")
            assert reply["ok"] is True, (raw_id, reply)
            assert reply["id"] == expected, (raw_id, reply)
            assert type(reply["id"]) is type(expected), (raw_id, reply)

            reply = send_with_id(c, raw_id, b"status", b',"sweep":424242')
            assert reply["ok"] is False, (raw_id, reply)
            assert reply["error"]["code"] == "not_found", (raw_id, reply)
            assert reply["id"] == expected, (raw_id, reply)


def test_ids_and_integers_in_lease_reply():
    spec = {"method": "grid", "parameters": {"optimizer": {"values": ["adam", "sm3", "shampoo"]},
                                             "lr": {"values": [0.001]}}}
    with Daemon() as d, Client(d.socket_path) as client, Client(d.socket_path) as worker:
        sweep = client.ok("submit", spec=spec)["sweep"]
        worker.ok("hello", version=1, role="worker", name="w1")
        for index, (raw_id, expected) in enumerate(IDS[:3]):
            reply = send_with_id(worker, raw_id, b"lease")
            assert reply["ok"] is True, reply
            assert reply["id"] == expected, reply
            trial = reply["trial"]
            assert trial["sweep"] == sweep, reply
            assert trial["index"] == index, reply
            assert trial["attempt"] == 1, reply
            assert type(trial["trial"]) is int, reply
            assert trial["trial"] > 0, reply
            assert trial["params"]["lr"] == 0.001, reply
            assert trial["checkpoint"] is None, reply
            done = worker.ok("complete", trial=trial["trial"], lease=trial["lease"], attempt=trial["attempt"],
                             final_loss=1.5, steps=10, seconds=0.1)
            assert done["ok"] is True


def test_reply_larger_than_print_buffer():
    # Replies up to 4 KiB are printed into the server's buffer; this list
    # reply is about 20 KiB, so it takes the allocating path.
    spec = {"method": "grid", "parameters": {"optimizer": {"values": ["adam"]}}}
    with Daemon() as d, Client(d.socket_path) as c:
        names = [f"sweep-{i:03d}-" + "x" * 200 for i in range(60)]
        for name in names:
            c.ok("submit", spec=dict(spec, name=name))
        c.send_raw(b'{"id":41,"op":"list"}\n')
        raw = c.recv_line()
        assert len(raw) > 4096, len(raw)
        reply = json.loads(raw.decode())
        assert reply["id"] == 41, reply["id"]
        assert [s["name"] for s in reply["sweeps"]] == names


if __name__ == "__main__":
    harness.main(globals())
