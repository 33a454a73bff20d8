#!/usr/bin/env python3
"""Memory of idle keep-alive connections (`make bench`, bench/run.sh).

Opens COUNT connections to a proxy on loopback, sends one HTTP/1.1
keep-alive request on each, reads the answer and leaves the connection
idle; reads the proxy's RSS (the PID and its children: nginx's workers)
before, with the connections open, and SETTLE seconds after they closed.
Prints one tab-separated line:

    count  rss_before_kib  rss_with_kib  rss_after_kib  bytes_per_connection

Usage: idle_connections.py PID PORT HOST PATH COUNT [SETTLE_SECONDS]
"""

import os
import resource
import socket
import sys
import time


def tree_rss_kib(pid):
    """VmRSS of `pid` and its descendants, in KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def read_answer(sock):
    """Read one response with a Content-Length body; True when it is a 2xx."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.split(b" ", 2)[1].startswith(b"2")


def main():
    pid, port, host, path, count = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        int(sys.argv[5]),
    )
    settle = float(sys.argv[6]) if len(sys.argv) > 6 else 3.0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    time.sleep(0.5)
    before = tree_rss_kib(pid)
    socks, failed = [], 0
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        if not read_answer(s):
            failed += 1
        socks.append(s)
    time.sleep(1.0)
    with_open = tree_rss_kib(pid)
    for s in socks:
        s.close()
    time.sleep(settle)
    after = tree_rss_kib(pid)
    per_conn = (with_open - before) * 1024 // max(count, 1)
    if failed:
        print(f"{failed} of {count} requests failed", file=sys.stderr)
    print(f"{count}\t{before}\t{with_open}\t{after}\t{per_conn}")


if __name__ == "__main__":
    main()
