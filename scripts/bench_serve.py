#!/usr/bin/env python3
"""GET /program-executions/{id} under load while an execution runs.

Starts `flowc serve` (release build) in a temporary folder, starts one
execution of CONTACTS contacts with the script dialer (every call answered,
lasting CALL_MS), lets it warm up, then measures twice for SECONDS each:

  alone:  the execution's calls per second, no requests;
  loaded: the same while RATE requests per second (open loop: each sent at
          its own instant, on keep-alive connections of THREADS threads)
          ask for the execution.

Prints the latency percentiles of the loaded window and both throughputs.

    cargo build --release && python3 scripts/bench_serve.py [CONTACTS] [SECONDS] [RATE]

CALL_MS (200) and CONCURRENCY (100) set the calls' length and the flow's
concurrency: 10 and 1000 make the engine, not the flow, the bound.

WHOLE=1 measures whole executions instead, for an engine-bound one that
ends in less than a window: one execution alone, from its creation to
`completed`; then SECONDS of load, a second execution of the same list
created one second into it and timed the same way.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWC = os.path.join(ROOT, "target", "release", "flowc")
CONTACTS = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 30
RATE = float(sys.argv[3]) if len(sys.argv) > 3 else 500
THREADS = 8
CALL_MS = int(os.environ.get("CALL_MS", "200"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "100"))
WHOLE = os.environ.get("WHOLE") == "1"

FLOW = """
contact {
  phone: phone
}

calendar always {
  hours mon-sun 00:00-24:00
}

strategy once {
  max attempts 1
}

compliance bench {
  max attempts 10 per 24h
}

flow bench {
  region "US"
  timezone "UTC"
  calendar always
  strategy once
  compliance bench
  concurrency CONCURRENCY
  step call {
    dial contact.phone timeout 20s
    on answered -> end completed
    on other -> end failed
  }
}
"""


def main():
    work = tempfile.mkdtemp(prefix="flowc-bench-serve-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    with open(os.path.join(data, "list.csv"), "w") as f:
        f.write("phone\n")
        for k in range(CONTACTS):
            f.write(f"+1212{2000000 + k:07d}\n")
    with open(os.path.join(data, "script.txt"), "w") as f:
        f.write(f"* answered lasting {CALL_MS}ms\n")
    db = os.path.join(work, "executions")
    key = subprocess.run([FLOWC, "keys", "create", "--db", db, "--name", "bench"],
                         capture_output=True, text=True, check=True).stdout.strip()
    server = subprocess.Popen([FLOWC, "serve", "--db", db, "--listen", "127.0.0.1:0", "--data-dir", data],
                              stderr=subprocess.PIPE, text=True)
    try:
        address = None
        for line in server.stderr:
            if " on http://" in line:
                address = line.split(" on http://")[1].strip().rstrip("/")
                break
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        host, port = address.split(":")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def request(conn, method, path, body=None):
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()

        conn = http.client.HTTPConnection(host, int(port))

        def load(path, t0):
            """RATE requests/s for SECONDS from t0, open loop: each request's
            latency counts from the instant it was due, so a slow answer
            delays the next. Returns the sorted latencies."""
            latencies = []
            lock = threading.Lock()
            n = int(SECONDS * RATE)

            def worker(w):
                c = http.client.HTTPConnection(host, int(port))
                mine = []
                for k in range(w, n, THREADS):
                    due = t0 + k / RATE
                    pause = due - time.time()
                    if pause > 0:
                        time.sleep(pause)
                    status, _ = request(c, "GET", path)
                    assert status == 200
                    mine.append(time.time() - due)
                with lock:
                    latencies.extend(mine)

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sorted(latencies), time.time() - t0

        def report(measured):
            lat, elapsed = measured
            pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
            print(f"{len(lat)} requests in {elapsed:.1f} s ({len(lat) / elapsed:.0f}/s)")
            print(f"latency p50 {pct(0.5):.2f} ms, p90 {pct(0.9):.2f} ms, p99 {pct(0.99):.2f} ms, max {lat[-1] * 1000:.2f} ms")

        def create():
            started = time.time()
            status, body = request(conn, "POST", "/program-executions",
                                   json.dumps({"flow": FLOW.replace("CONCURRENCY", str(CONCURRENCY)), "contactsPath": "list.csv", "dialer": "script:script.txt"}))
            assert status == 201, body
            execution = json.loads(body)
            print(f"execution of {CONTACTS} contacts created in {time.time() - started:.2f} s")
            return started, f"/program-executions/{execution['id']}"

        def whole(started, path, c):
            """Seconds from creation to `completed`, polled every 50 ms."""
            while True:
                status, body = request(c, "GET", path)
                assert status == 200, body
                e = json.loads(body)
                if e["status"] == "completed":
                    assert e["contactsCompleted"] == CONTACTS, e
                    return time.time() - started
                time.sleep(0.05)

        if WHOLE:
            alone = whole(*create(), conn)
            print(f"alone: {alone:.2f} s, {CONTACTS / alone:.0f} contacts/s")
            started, path = create()
            result = {}
            t0 = time.time()
            t = threading.Thread(target=lambda: result.update(lat=load(path, t0)))
            t.start()
            loaded = whole(started, path, conn)
            t.join()
            report(result["lat"])
            print(f"under load: {loaded:.2f} s, {CONTACTS / loaded:.0f} contacts/s "
                  f"({(alone / loaded - 1) * 100:+.1f}% throughput)")
            return

        started, path = create()

        def calls():
            return json.loads(request(conn, "GET", path)[1])["callsUsed"]

        time.sleep(5)  # warm up

        def window(loaded):
            first = calls()
            t0 = time.time()
            lat = load(path, t0) if loaded else time.sleep(SECONDS)
            elapsed = time.time() - t0
            return (calls() - first) / elapsed, lat

        alone, _ = window(False)
        loaded, lat = window(True)
        alone_after, _ = window(False)
        report(lat)
        print(f"execution throughput: alone {alone:.0f} calls/s, under load {loaded:.0f} calls/s, "
              f"alone again {alone_after:.0f} calls/s ({(loaded / ((alone + alone_after) / 2) - 1) * 100:+.1f}%)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
