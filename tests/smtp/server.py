#!/usr/bin/env python3
"""An SMTP server for flowc's tests (Debian's python3-aiosmtpd).

    server.py PORT OUTFILE

Listens on 127.0.0.1:PORT; each accepted message is appended to OUTFILE as
one JSON line (from, to, data). A recipient whose address starts with
`reject` is refused for good (550), one starting with `busy` for now (451).
Prints `ready` once listening; stops on SIGTERM.
"""
import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf8", "replace"),
            }) + "\n")
        return "250 2.0.0 queued as test"


controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
controller.stop()
