# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs on the lab client: HTTP/1.0 requests to HOST:PORT, a new TCP connection each, from CONCURRENCY threads for
SECONDS; prints {"requests": n, "errors": e, "seconds": s, "rps": r, "answers": {body: count}}.

    python3 loadgen.py HOST PORT SECONDS CONCURRENCY FIRST_SOURCE_PORT LAST_SOURCE_PORT

Each connection comes from its own source port in the given range, cycling. Two load runs through the same director
to the same real server port must use disjoint ranges: IPVS keeps a connection in its table for two minutes after it
closes, and it takes a real server's reply to a reused client port for that old connection (and rewrites it)."""
from __future__ import annotations

import collections
import json
import socket
import sys
import threading
import time


def worker(host, port, deadline, sources, counts, lock):
    request = ("GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % host).encode()
    local = collections.Counter()
    i = 0
    while time.perf_counter() < deadline:
        source = sources[i % len(sources)]
        i += 1
        try:
            with socket.create_connection((host, port), timeout=5, source_address=("", source)) as s:
                s.sendall(request)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            head, _sep, body = data.partition(b"\r\n\r\n")
            local[body.strip().decode(errors="replace") if head.startswith(b"HTTP/1.1 200") else "error"] += 1
        except OSError:
            local["error"] += 1
    with lock:
        counts.update(local)


def main():
    host, port, seconds, concurrency = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    ports = list(range(int(sys.argv[5]), int(sys.argv[6]) + 1))
    counts, lock = collections.Counter(), threading.Lock()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(host, port, start + seconds, ports[n::concurrency], counts, lock))
               for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    errors = counts.pop("error", 0)
    done = sum(counts.values())
    print(json.dumps({"requests": done, "errors": errors, "seconds": elapsed, "rps": done / elapsed,
                      "answers": dict(counts)}))


if __name__ == "__main__":
    main()
