"""The hostile-input battery's upstream (bench/hostile/): a threaded HTTP/1.1
server that records every request it receives (method, path, Host, Upgrade,
body bytes counted as they arrive, the address it came to) and counts the
connections it accepts. Answers 200 "ok", or BIG_BODY bytes under /big."""

import http.server
import threading

BIG_BODY = 20 << 20  # the answer to GET /big (the slow reader's response)


class UpstreamState:
    """What the upstream saw: one record per request head, body bytes counted as they arrive."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.accepted = 0

    def add(self, record):
        with self.lock:
            self.records.append(record)

    def mark(self):
        with self.lock:
            return len(self.records), self.accepted

    def since(self, mark, path_part=""):
        with self.lock:
            return [r for r in self.records[mark[0]:] if path_part in r["path"]]

    def accepted_since(self, mark):
        with self.lock:
            return self.accepted - mark[1]


class UpstreamServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, port, state):
        self.state = state
        super().__init__((address, port), UpstreamHandler)

    def get_request(self):
        conn, addr = super().get_request()
        with self.state.lock:
            self.state.accepted += 1
        return conn, addr


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def __getattr__(self, name):
        # Every method (do_GET, do_POST, do_PRI, ...) is served the same way.
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def serve(self):
        record = {
            "method": self.command,
            "path": self.path,
            "host": self.headers.get_all("Host") or [],
            "upgrade": self.headers.get("Upgrade"),
            "body": 0,
            "complete": False,
            "address": self.server.server_address[0],
        }
        self.server.state.add(record)
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.read_chunked(record)
            else:
                self.read_exact(int(self.headers.get("Content-Length") or 0), record)
        except (OSError, ValueError):
            self.close_connection = True
            return
        record["complete"] = True
        try:
            if self.path.startswith("/big"):
                self.send_response(200)
                self.send_header("Content-Length", str(BIG_BODY))
                self.end_headers()
                block = b"x" * 65536
                for _ in range(BIG_BODY // len(block)):
                    self.wfile.write(block)
            else:
                body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def read_exact(self, n, record):
        while n > 0:
            data = self.rfile.read1(min(n, 65536))
            if not data:
                raise ValueError("body cut short")
            record["body"] += len(data)
            n -= len(data)

    def read_chunked(self, record):
        while True:
            size = int(self.rfile.readline(100).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                    pass
                return
            self.read_exact(size, record)
            self.rfile.readline(10)
