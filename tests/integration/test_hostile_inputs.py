"""Hostile input against a running sweepd, one named test per case. The cases:
over-long and never-ending lines, idle connections, invalid UTF-8 and NUL bytes, JSON
nested 100,000 deep, extreme numbers, every field with the wrong type, unknown
ops, 10,000 connections at once, wrong TCP tokens, a worker reporting on a
lease it does not hold, and checkpoint locations that leave their directory.

Each case runs against a daemon holding a sweep with a completed trial (with
metrics and a checkpoint) and a running one. Afterwards the daemon must still
answer status, and every table must read as before the case. The workers and
events tables are left out of that comparison only in the cases that connect a
worker, because a worker's hello is recorded there by design.
"""

import contextlib
import json
import os
import resource
import selectors
import socket
import sqlite3
import threading
import time

import harness
from harness import Client, Daemon

SPEC = {"name": "hostile", "method": "grid",
        "parameters": {"optimizer": {"values": ["adam", "sm3"]}, "lr": {"values": [0.01, 0.001]}}}
WORKER_TABLES = ("workers", "events")


def db_snapshot(daemon, skip=()):
    """Return {table: sorted rows} for every table of the daemon's database
    except those in skip, read through a separate read-only connection."""
    con = sqlite3.connect(f"file:{daemon.db_path()}?mode=ro", uri=True)
    try:
        names = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: sorted(con.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
                for name in names if name not in skip}
    finally:
        con.close()


def assert_unharmed(daemon, before, skip=()):
    """Check that the daemon replies to status and that no table changed."""
    with Client(daemon.socket_path) as c:
        status = c.ok("status")
    assert len(status["sweeps"]) == 1, status
    after = db_snapshot(daemon, skip)
    assert sorted(after) == sorted(before), (sorted(before), sorted(after))
    for table, rows in before.items():
        assert after[table] == rows, f"table {table} changed:\nbefore {rows}\nafter  {after[table]}"


def lease_fields(trial):
    return {"trial": trial["trial"], "attempt": trial["attempt"], "lease": trial["lease"]}


def populate(daemon):
    """Store a sweep with one completed trial and one running trial. Returns
    the worker connection that holds the running trial, and its lease fields.
    The connection must stay open, or the trial is requeued."""
    with Client(daemon.socket_path) as c:
        c.ok("submit", spec=SPEC)
    holder = Client(daemon.socket_path)
    holder.ok("hello", version=1, role="worker", name="holder", host="testhost", pid=os.getpid())
    first = lease_fields(holder.ok("lease")["trial"])
    holder.ok("metrics", points=[{"step": 1, "train_loss": 3.0, "val_loss": 3.1}], **first)
    holder.ok("checkpoint", location="ck/1/step-1.ckpt", step=1, **first)
    holder.ok("complete", final_loss=2.5, best_loss=2.4, steps=1, seconds=0.1, **first)
    running = lease_fields(holder.ok("lease")["trial"])
    holder.ok("checkpoint", location="ck/2/step-1.ckpt", step=1, **running)
    return holder, running


@contextlib.contextmanager
def hostile_daemon(args=(), state_dir=None, skip=()):
    """Start a populated daemon for one case. Yields (daemon, holder, running
    lease fields); when the case ends without an exception, checks that the
    daemon replies to status and that no table outside skip changed."""
    with Daemon(state_dir=state_dir, args=args) as d:
        holder, running = populate(d)
        before = db_snapshot(d, skip)
        yield d, holder, running
        assert_unharmed(d, before, skip)
        holder.close()


def expect_rejected_line(daemon, line, code):
    """Send line on a fresh connection; assert one error reply with code and
    id null, then a close."""
    c = Client(daemon.socket_path)
    try:
        c.send_raw(line)
    except OSError:
        pass  # the daemon may close before it read everything
    messages = c.wait_closed()
    c.close()
    assert len(messages) == 1, (line[:80], messages)
    assert messages[0]["ok"] is False, messages
    assert messages[0]["error"]["code"] == code, (line[:80], messages)
    assert messages[0]["id"] is None, messages


def test_overlong_line():
    with hostile_daemon(args=["--max-line-bytes", "65536"]) as (d, holder, _):

        # A complete line over the limit, and a stream that never ends a line.
        expect_rejected_line(d, b'{"id":1,"op":"status","pad":"' + b"x" * 200000 + b'"}\n', "line_too_long")
        expect_rejected_line(d, b"y" * (8 * 1024 * 1024), "line_too_long")
        match = d.wait_log(r"longer than --max-line-bytes; closing; line starts \"(.*)\"$")
        assert len(match.group(1)) < 200, "the logged sample is short"



def test_slow_sender_timed_out():
    with hostile_daemon(args=["--idle-timeout", "1"]) as (d, holder, _):

        # One byte every 0.1 s and never a newline: the timeout counts from
        # the first byte of the partial line, so trickling does not extend it.
        c = Client(d.socket_path)
        c.send_raw(b'{"id":1,"op":"sta')
        stop = threading.Event()
        sent = []

        def trickle():
            while not stop.wait(0.1):
                try:
                    c.sock.send(b"t")
                except OSError:
                    return
                sent.append(1)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        messages = c.wait_closed(timeout=20)
        stop.set()
        thread.join()
        assert messages[-1]["error"]["code"] == "timeout", messages
        assert "not completed" in messages[-1]["error"]["message"]
        assert len(sent) >= 5, f"only {len(sent)} bytes were trickled before the close"
        d.wait_log(r"left a partial line for 1\.0 s \(--idle-timeout\); closing")



def test_idle_connection_timed_out():
    with hostile_daemon(args=["--idle-timeout", "1"]) as (d, holder, _):

        c = Client(d.socket_path)
        messages = c.wait_closed(timeout=20)
        assert len(messages) == 1, messages
        assert messages[0]["error"]["code"] == "timeout"
        assert "idle" in messages[0]["error"]["message"]
        d.wait_log(r"sent nothing for 1\.0 s \(--idle-timeout\); closing")
        # The worker with a running trial is exempt, so its trial is still running.
        assert holder.ok("workers")["workers"][0]["state"] == "running"



def test_invalid_utf8_and_nul_bytes():
    with hostile_daemon() as (d, holder, _):

        bad = [
            b'{"id":1,"op":"st\xffatus"}\n',                      # a byte never valid in UTF-8
            b'{"id":"\xc3\x28","op":"status"}\n',                 # a lead byte without its continuation
            b'{"id":3,"op":"status","x":"\xc0\xaf"}\n',           # an overlong encoding of '/'
            b'{"id":4,"op":"status","x":"\xed\xa0\x80"}\n',       # a UTF-16 surrogate
            b'{"id":5,"op":"status","x":"\xf4\x90\x80\x80"}\n',   # past U+10FFFF
            b'{"id":6,"op":"status","x":"\xe2\x82"}\n',           # a sequence cut short
            b'{"id":7,"op":"status","x":"a\x00b"}\n',             # NUL inside a string
            b'{"id":8,"op":"status"}\x00\n',                      # NUL after the object
            b'{"id":9,"op":"submit","spec":{"name":"bad\xc3\x28","method":"grid",'
            b'"parameters":{"optimizer":{"values":["adam"]}}}}\n',
        ]
        for line in bad:
            expect_rejected_line(d, line, "bad_json")
        d.wait_log(r"NUL byte or invalid UTF-8 at byte \d+; closing")

        # Valid UTF-8 beyond ASCII passes, and the reply stays valid UTF-8.
        with Client(d.socket_path) as c:
            c.send_raw('{"id":"名前 😀","op":"list","x":"é"}\n'.encode())
            raw = c.recv_line()
        reply = json.loads(raw.decode("utf-8"))
        assert reply["ok"] is True
        assert reply["id"] == "名前 😀"



def test_json_nested_100000_deep():
    with hostile_daemon() as (d, holder, _):

        depth = 100000
        expect_rejected_line(d, b'{"id":1,"op":"status","x":' + b"[" * depth + b"]" * depth + b"}\n", "too_deep")
        expect_rejected_line(d, b'{"id":2,"op":"status","x":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}\n",
                             "too_deep")
        spec = b'{"method":"grid","parameters":{"lr":' + b'{"p":' * depth + b"1" + b"}" * depth + b"}}"
        expect_rejected_line(d, b'{"id":3,"op":"submit","spec":' + spec + b"}\n", "too_deep")
        d.wait_log(r"nested deeper than 64 levels; closing")

        # Brackets inside a string are not nesting.
        with Client(d.socket_path) as c:
            assert c.ok("list", x="[" * depth)["sweeps"][0]["name"] == "hostile"



def test_extreme_numbers():
    with hostile_daemon(skip=WORKER_TABLES) as (d, holder, running):
        c = Client(d.socket_path)

        # 1e400 parses to infinity, a 30-digit integer is past 2^53, and -0 is the integer 0.
        cases = [
            (b'"op":"status","sweep":1e400', "bad_request"),
            (b'"op":"status","sweep":-1e400', "bad_request"),
            (b'"op":"status","sweep":123456789012345678901234567890', "bad_request"),
            (b'"op":"status","sweep":-0', "not_found"),
            (b'"op":"status","sweep":1.5', "bad_request"),
            (b'"op":"trials","sweep":1,"limit":1e400', "bad_request"),
            (b'"op":"tickets","sweep":1,"threshold":1e400', "bad_request"),
            (b'"op":"tickets","sweep":1,"threshold":-1e400', "bad_request"),
            (b'"op":"validate","show":1e400,"spec":{}', "bad_request"),
            (b'"op":"hello","version":1e400', "bad_request"),
            (b'"op":"hello","version":-0', "unsupported_version"),
            (b'"op":"tickets","sweep":1,"threshold":-0', None),
        ]
        for fields, code in cases:
            c.send_raw(b'{"id":1,' + fields + b"}\n")
            reply = c.recv()
            assert reply is not None, fields
            if code is None:
                assert reply["ok"] is True, (fields, reply)
            else:
                assert reply["error"]["code"] == code, (fields, reply)

        # A spec with a non-finite or huge value names the field.
        for literal in (b"1e400", b"-1e400", b"123456789012345678901234567890e300"):
            c.send_raw(b'{"id":13,"op":"validate","spec":{"method":"grid","parameters":'
                       b'{"lr":{"values":[' + literal + b']}}}}\n')
            reply = c.recv()
            assert reply["error"]["code"] == "invalid_spec", reply
            assert "parameters.lr" in reply["error"]["message"], reply

        # An id of 1e400 cannot be echoed as a JSON number, so it comes back null.
        c.send_raw(b'{"id":1e400,"op":"list"}\n')
        reply = c.recv()
        assert reply["ok"] is True
        assert reply["id"] is None

        # Worker messages on the running trial: nothing is stored.
        lf = json.dumps(running)[1:-1].encode()
        for fields in (b'"op":"heartbeat","step":1e400', b'"op":"heartbeat","step":-1e300',
                       b'"op":"metrics","points":[{"step":1e300}]', b'"op":"metrics","points":[{"step":-1}]',
                       b'"op":"metrics","points":[{"step":-1e400}]', b'"op":"metrics","points":[{"step":2.5}]',
                       b'"op":"checkpoint","location":"ck/x","step":1e400',
                       b'"op":"complete","final_loss":1.0,"steps":1e300',
                       b'"op":"diverged","step":-1e400'):
            holder.send_raw(b'{"id":20,' + lf + b"," + fields + b"}\n")
            reply = holder.recv()
            assert reply["error"]["code"] == "bad_request", (fields, reply)
        holder.send_raw(b'{"id":21,"op":"heartbeat","trial":1e300,"attempt":1,"lease":"x","step":1}\n')
        assert holder.recv()["error"]["code"] == "bad_request"

        # Re-presented leases with absurd numbers are each rejected.
        w = Client(d.socket_path)
        w.send_raw(b'{"id":1,"op":"hello","version":1,"role":"worker","name":"numbers",'
                   b'"leases":[{"trial":1e300,"attempt":1,"lease":"x"},{"trial":1,"attempt":-1e400,"lease":"x"},'
                   b'{"trial":-0,"attempt":1,"lease":"x"}]}\n')
        hello = w.recv()
        assert hello["ok"] is True, hello
        assert [r["ok"] for r in hello["leases"]] == [False, False, False]
        assert [r["error"] for r in hello["leases"][:2]] == ["bad_request", "bad_request"]
        assert hello["leases"][2]["error"] == "not_found"
        w.close()

        c.close()


# Every request field of docs/PROTOCOL.md with its type. "loss" is a number or
# one of "nan", "inf", "-inf".
CLIENT_FIELDS = {
    "hello": {"version": "int", "role": "str", "name": "str", "host": "str", "pid": "int", "leases": "list"},
    "submit": {"spec": "object"},
    "validate": {"spec": "object", "generic": "bool", "show": "int"},
    "status": {"sweep": "int"},
    "trials": {"sweep": "int", "state": "str", "sort": "str", "limit": "int"},
    "tickets": {"sweep": "int", "threshold": "loss", "by": "str"},
    "pause": {"sweep": "int"},
    "resume": {"sweep": "int"},
    "cancel": {"sweep": "int"},
    "watch": {"sweep": "int"},
}
LEASE_TYPES = {"trial": "int", "attempt": "int", "lease": "str"}
WORKER_FIELDS = {
    "lease": {"wait": "bool"},
    "heartbeat": dict(LEASE_TYPES, step="int", loss="loss", tokens_per_s="loss"),
    "metrics": dict(LEASE_TYPES, points="list"),
    "checkpoint": dict(LEASE_TYPES, location="str", step="int"),
    "complete": dict(LEASE_TYPES, final_loss="loss", best_loss="loss", steps="int", seconds="loss"),
    "diverged": dict(LEASE_TYPES, step="int", loss="loss"),
    "failed": dict(LEASE_TYPES, error="str"),
    "preempted": dict(LEASE_TYPES, location="str", step="int"),
}
# Values of other types. A null string or loss means "absent", which is
# valid for the optional ones, so null is only sent where it is a wrong type.
WRONG_VALUES = {
    "int": ["1", 1.5, True, [], {}, None],
    "str": [1, True, [], {}],
    "bool": [1, "true", [], {}, None],
    "loss": ["high", True, [], {}],
    "object": ["x", 1, [], True, None],
    "list": ["x", 1, {}, True],
}
# Valid values for the fields a wrong-typed field is sent with.
VALID_CLIENT = {"submit": {"spec": SPEC}, "validate": {"spec": SPEC}, "trials": {"sweep": 1},
                "tickets": {"sweep": 1, "threshold": 2.0}}
VALID_WORKER = {"checkpoint": {"location": "ck/2/step-2.ckpt", "step": 2}, "complete": {"final_loss": 2.0},
                "metrics": {"points": [{"step": 2, "train_loss": 2.0, "val_loss": 2.0}]},
                "preempted": {"location": "ck/2/step-2.ckpt", "step": 2}}
# Point fields inside metrics.
POINT_FIELDS = {"step": "int", "train_loss": "loss", "val_loss": "loss"}


def test_wrong_field_types():
    with hostile_daemon() as (d, holder, running):
        c = Client(d.socket_path)
        failures = []

        def check(conn, op, field, value, fields):
            reply = conn.request(op, **fields)
            error = reply.get("error") or {}
            if reply.get("ok") is not False or error.get("code") != "bad_request":
                failures.append(f"{op}.{field}={value!r}: {reply}")
            elif field not in error.get("message", ""):
                failures.append(f"{op}.{field}={value!r}: the message does not name the field: {error}")

        for op, types in CLIENT_FIELDS.items():
            for field, kind in types.items():
                for value in WRONG_VALUES[kind]:
                    fields = dict(VALID_CLIENT.get(op, {}))
                    fields[field] = value
                    check(c, op, field, value, fields)
        for op, types in WORKER_FIELDS.items():
            for field, kind in types.items():
                for value in WRONG_VALUES[kind]:
                    fields = dict(running, **VALID_WORKER.get(op, {}))
                    fields[field] = value
                    check(holder, op, field, value, fields)
        for field, kind in POINT_FIELDS.items():
            for value in WRONG_VALUES[kind]:
                point = {"step": 3, "train_loss": 1.0, "val_loss": 1.0, field: value}
                check(holder, "metrics", field, value, dict(running, points=[point]))

        # The id and op themselves.
        for value in ([], {}, True, None):
            c.send_raw(json.dumps({"id": value, "op": "list"}).encode() + b"\n")
            reply = c.recv()
            if reply["ok"] is not False or reply["error"]["code"] != "bad_request" or reply["id"] is not None:
                failures.append(f"id={value!r}: {reply}")
        for value in (1, [], {}, True, None):
            reply = c.request(value)
            if reply["ok"] is not False or reply["error"]["code"] != "bad_request":
                failures.append(f"op={value!r}: {reply}")

        assert not failures, "wrong types accepted or misreported:\n" + "\n".join(failures)
        c.close()


def test_unknown_op():
    with hostile_daemon() as (d, holder, _):

        with Client(d.socket_path) as c:
            for op in ("explode", "", "STATUS", "status ", " status", "stat", "статус", "x" * 100000):
                reply = c.request(op)
                assert reply["ok"] is False, op[:40]
                assert reply["error"]["code"] == "unknown_op", (op[:40], reply)
                assert len(reply["error"]["message"]) < 300, "the op is quoted as a short sample"
            # The connection stays open after an unknown op.
            assert c.ok("list")["sweeps"][0]["name"] == "hostile"



def raise_fd_limit(needed):
    """Raise this process's open-file limit (inherited by the daemon it starts)
    to at least needed; returns the old limits for restoring."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    if soft < needed:
        new_hard = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, new_hard))
    return old


def test_ten_thousand_connections():
    count, limit = 10000, 1024
    old_limits = raise_fd_limit(count + limit + 200)
    try:
        with hostile_daemon(args=["--max-connections", str(limit), "--idle-timeout", "600"]) as (d, holder, _):

            # Open all at once. A blocking connect on a unix socket waits for
            # room in the listen backlog, so the kernel refuses none of them.
            started = time.monotonic()
            socks = []
            for _ in range(count):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(d.socket_path)
                socks.append(s)

            # The daemon serves `limit` connections, the holder among them;
            # every one past that gets one too_many_connections line and EOF.
            expected_rejected = count - (limit - 1)
            selector = selectors.DefaultSelector()
            for s in socks:
                s.setblocking(False)
                selector.register(s, selectors.EVENT_READ)
            rejected, data = set(), {}
            deadline = time.monotonic() + harness.scaled(120)
            while len(rejected) < expected_rejected and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=1.0):
                    s = key.fileobj
                    chunk = s.recv(4096)
                    data[s] = data.get(s, b"") + chunk
                    if not chunk:
                        rejected.add(s)
                        selector.unregister(s)
            selector.close()
            assert len(rejected) == expected_rejected, (len(rejected), expected_rejected)
            for s in rejected:
                reply = json.loads(data[s])
                assert reply["error"]["code"] == "too_many_connections", reply
                assert str(limit) in reply["error"]["message"]

            # Every connection that was kept is served.
            served = [s for s in socks if s not in rejected]
            assert len(served) == limit - 1
            for s in served:
                s.settimeout(harness.scaled(30))
                s.sendall(b'{"id":1,"op":"list"}\n')
            for s in served:
                line = b""
                while not line.endswith(b"\n"):
                    chunk = s.recv(65536)
                    assert chunk, "a served connection was closed"
                    line += chunk
                assert json.loads(line)["ok"] is True
            d.wait_log(rf"rejected: {limit} connections is the maximum \(--max-connections\)")
            # The rejections are logged at most once per second.
            seconds = time.monotonic() - started
            logged = [line for line in d.log_text().splitlines() if "connections is the maximum" in line]
            assert len(logged) <= seconds + 1, f"{len(logged)} rejection lines in {seconds:.1f} s"
            for s in socks:
                s.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old_limits)


def test_wrong_or_missing_tcp_token():
    state = harness.tmp_dir()
    token = "hostile-token-5f1c2d9e"
    token_path = os.path.join(state, "token")
    with open(token_path, "w") as f:
        f.write(token + "\n")
    os.chmod(token_path, 0o600)
    args = ["--listen", "127.0.0.1:0", "--token-file", token_path]
    with hostile_daemon(args=args, state_dir=state) as (d, holder, _):

        attempts = [
            {"op": "status"},                                 # not hello first
            {"op": "submit", "spec": SPEC},                   # a write before hello
            {"op": "hello", "version": 1},                    # no token
            {"op": "hello", "version": 1, "token": ""},
            {"op": "hello", "version": 1, "token": "guess"},
            {"op": "hello", "version": 1, "token": token[:-1]},   # a prefix
            {"op": "hello", "version": 1, "token": token + "x"},  # one byte more
            {"op": "hello", "version": 1, "token": token.upper()},
            {"op": "hello", "version": 1, "token": 12345},
            {"op": "hello", "version": 1, "token": None},
            {"op": "hello", "version": 1, "role": "worker", "name": "intruder", "token": "guess"},
        ]
        for fields in attempts:
            c = Client(d.tcp_address)
            request = dict(fields, id=1)
            c.send_raw(json.dumps(request).encode() + b"\n")
            c.send_raw(b'{"id":2,"op":"list"}\n')  # must get no reply
            messages = c.wait_closed()
            c.close()
            assert len(messages) == 1, (fields, messages)
            assert messages[0]["error"]["code"] == "unauthorized", (fields, messages)

        # Logged with the peer address; repeats within a second are counted,
        # and the next logged line reports how many were not logged.
        d.wait_log(r"peer=127\.0\.0\.1:\d+ rejected: first request was not hello")
        deadline = time.monotonic() + harness.scaled(20)
        suppressed = None
        while suppressed is None:
            assert time.monotonic() < deadline, "no line reported suppressed rejections"
            mark = d.log_mark()
            with Client(d.tcp_address) as c:
                c.send_raw(b'{"id":1,"op":"hello","token":"guess"}\n')
                c.wait_closed()
            try:
                match = d.wait_log(r"rejected: wrong token \((\d+) more rejections not logged\)", 0.5, since=mark)
            except TimeoutError:
                continue
            if int(match.group(1)) > 0:
                suppressed = int(match.group(1))
        rejected_lines = [line for line in d.log_text().splitlines() if "rejected:" in line]
        assert len(rejected_lines) < len(attempts), "repeated rejections are rate-limited"

        # The right token still works, over TCP and with nothing else needed on unix.
        with Client(d.tcp_address) as good:
            good.ok("hello", version=1, token=token)
            assert good.ok("list")["sweeps"][0]["name"] == "hostile"



def test_lease_not_held():
    with hostile_daemon(skip=WORKER_TABLES) as (d, holder, running):
        with Client(d.socket_path) as c:
            completed = c.ok("trials", sweep=1, state="completed")["trials"][0]

        other = Client(d.socket_path)
        other.ok("hello", version=1, role="worker", name="other")
        guessed = dict(running, lease="0" * 32)
        wrong_attempt = dict(running, attempt=running["attempt"] + 1)
        old_attempt = dict(running, attempt=0)
        finished = {"trial": completed["trial"], "attempt": 1, "lease": running["lease"]}
        missing = dict(running, trial=999)
        messages = {
            "heartbeat": {"step": 5, "loss": 1.0},
            "metrics": {"points": [{"step": 5, "train_loss": 1.0, "val_loss": 1.0}]},
            "checkpoint": {"location": "ck/evil.ckpt", "step": 5},
            "complete": {"final_loss": 0.1, "best_loss": 0.1, "steps": 5, "seconds": 1.0},
            "diverged": {"step": 5, "loss": "nan"},
            "failed": {"error": "taken over"},
            "preempted": {"location": "ck/evil.ckpt", "step": 5},
        }
        for op, fields in messages.items():
            for lease, code in ((guessed, "stale_lease"), (wrong_attempt, "stale_lease"),
                                (old_attempt, "stale_lease"), (finished, "stale_lease"), (missing, "not_found")):
                reply = other.request(op, **lease, **fields)
                assert reply["ok"] is False, (op, lease, reply)
                assert reply["error"]["code"] == code, (op, lease, reply)
        d.wait_log(r"worker=other stale lease rejected")

        # The trial still belongs to the holder, which can finish it.
        workers = {w["worker"]: w for w in other.ok("workers")["workers"]}
        assert workers["holder"]["trial"] == running["trial"]
        assert workers["other"]["trial"] is None
        other.close()
        assert holder.ok("heartbeat", step=2, loss=2.0, **running)["ok"] is True


def test_checkpoint_location_escapes():
    with Daemon() as d:
        holder, running = populate(d)
        before = db_snapshot(d)

        escapes = ["..", "../x.ckpt", "ck/../../etc/passwd", "/state/ck/../../../etc/shadow", "ck/2/..",
                   "./../x", "ck//..//x", "ck/2/step-1.ckpt/../../../..", ""]
        for location in escapes:
            for op in ("checkpoint", "preempted"):
                reply = holder.request(op, location=location, step=3, **running)
                assert reply["ok"] is False, (op, location, reply)
                assert reply["error"]["code"] == "bad_request", (op, location, reply)
                assert "location" in reply["error"]["message"]
        # ".." inside a name is not a component, so these stay valid.
        assert holder.ok("checkpoint", location="ck/2/a..b.ckpt", step=3, **running)
        after_valid = db_snapshot(d)
        assert after_valid["trials"] != before["trials"], "a valid location is stored"
        with Client(d.socket_path) as c:
            trial = [t for t in c.ok("trials", sweep=1)["trials"] if t["trial"] == running["trial"]][0]
        assert trial["checkpoint"] == "ck/2/a..b.ckpt"
        assert trial["state"] == "running"

        assert_unharmed(d, after_valid)
        holder.close()


if __name__ == "__main__":
    harness.main(globals())
