"""A raw HTTP/1.1 client for the hostile-input battery (bench/hostile/): bytes
as written, on loopback, each read bounded by a timeout, and what happened
instead of a response ("closed", "reset", "timeout") as a value."""

import socket
import time


def connect(port, timeout=5.0, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def request(method, path, host, headers=(), body=b"", content_length=None):
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += list(headers)
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    elif body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Response:
    def __init__(self, status, headers):
        self.status = status
        self.headers = headers

    def header(self, name):
        return self.headers.get(name.lower())


def read_head(s):
    """Reads one response head (skipping 1xx); the status, or 'closed'/'reset'/'timeout'."""
    data = b""
    try:
        while True:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return "closed" if not data else "cut"
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            if 100 <= status < 200 and status != 101:
                continue
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), value.strip())
            return Response(status, headers)
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"


def status_of(answer):
    return answer.status if isinstance(answer, Response) else answer


def exchange(port, raw, timeout=5.0):
    """Sends raw bytes, returns the response head (or what happened instead)."""
    with connect(port, timeout) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass
        return read_head(s)


def get(port, path, host="app.test", headers=()):
    return status_of(exchange(port, request("GET", path, host, headers)))


def wait_closed(s, cap):
    """Seconds until the peer closes s (reading and dropping what it sends), or None past cap."""
    start = time.monotonic()
    while True:
        left = cap - (time.monotonic() - start)
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except ConnectionResetError:
            return time.monotonic() - start
        except socket.timeout:
            return None
