#!/usr/bin/env python3
"""A bridge for flowc's tests: `--dialer exec:python3 tests/bridge/bridge.py MODE`.

It speaks the protocol of docs/bridge.md. A dial's outcome comes from the
number's last digit (see OUTCOMES). Replies to dials are held and sent in
reverse order, three at a time (or when the input goes quiet), so flowc
must match replies by id. Every request is appended, as received, to the
file named by FLOWC_BRIDGE_LOG.

MODE: normal | crash N (exit after N dials) | garbage (a stray line on the
first dial) | hang (never answers a dial)
"""
import json
import os
import select
import sys

OUTCOMES = {
    "0": ("answered", 200, "OK"),
    "1": ("busy", 486, "Busy Here"),
    "2": ("no_answer", 480, "Temporarily Unavailable"),
    "3": ("rejected", 603, "Decline"),
    "4": ("invalid_number", 404, "Not Found"),
    "5": ("network_error", 503, "Service Unavailable"),
    "6": ("voicemail", 200, "OK"),
}

mode = sys.argv[1] if len(sys.argv) > 1 else "normal"
crash_after = int(sys.argv[2]) if mode == "crash" else None
log = open(os.environ["FLOWC_BRIDGE_LOG"], "a") if os.environ.get("FLOWC_BRIDGE_LOG") else None
held = []
dials = 0


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def flush_held():
    while held:
        send(held.pop())


def handle(req):
    global dials
    op = req.get("op")
    rid = req["id"]
    if op == "dial":
        dials += 1
        if mode == "garbage":
            sys.stdout.write("hello there, this is not JSON\n")
            sys.stdout.flush()
            return
        if mode == "hang":
            return
        if crash_after is not None and dials > crash_after:
            sys.stderr.write("bridge: lost the provider's connection (simulated)\n")
            sys.stderr.flush()
            sys.exit(3)
        outcome, status, reason = OUTCOMES.get(req["to"][-1], OUTCOMES["2"])
        held.append({"id": rid, "outcome": outcome, "sipStatus": status, "reason": reason})
        if len(held) >= 3:
            flush_held()
    elif op == "gather":
        send({"id": rid, "digits": "1"})
    elif op == "transfer":
        send({"id": rid, "transfer": "answered"})
    elif op == "sms":
        if "temporary" in req.get("text", ""):
            send({"id": rid, "error": "provider busy", "temporary": True})
        elif "refuse" in req.get("text", ""):
            send({"id": rid, "error": "number cannot receive SMS"})
        else:
            send({"id": rid, "ok": True})
    else:
        send({"id": rid, "ok": True})


def lines():
    """Request lines as they come; between bursts, held replies go out."""
    pending = b""
    fd = sys.stdin.fileno()
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode()
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            flush_held()
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            flush_held()
            return
        pending += chunk


for line in lines():
    if not line.strip():
        continue
    req = json.loads(line)
    if log:
        log.write(json.dumps(req) + "\n")
        log.flush()
    handle(req)
