#!/usr/bin/env python3
"""A TLS front for a sipp trunk over TCP (Debian's sipp has no TLS): accepts
TLS on 127.0.0.1, prints its port, and relays each connection's bytes to
127.0.0.1:TARGET and back. Given CLIENT_CA, it asks each client for a
certificate and refuses the connection unless that CA signed it.

    tls_relay.py CERT KEY TARGET_PORT [CLIENT_CA]
"""

import socket
import ssl
import sys
import threading

cert, key, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
if len(sys.argv) > 4:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(sys.argv[4])
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)


def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


while True:
    raw, _ = server.accept()
    try:
        tls = context.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print(f"handshake failed: {e}", file=sys.stderr, flush=True)
        raw.close()
        continue
    upstream = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(tls, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, tls), daemon=True).start()
