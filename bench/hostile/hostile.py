#!/usr/bin/env python3
"""Tailgate and nginx against hostile input, side by side (`make test-hostile`).

Starts one upstream (a threaded HTTP/1.1 server in this process that records
every request it receives and counts the connections it accepts), nginx and
Tailgate with equivalent configs (nginx.conf.in, tailgate.toml.in beside this
file), sends each proxy the same hostile inputs (issue 24's classes) and prints
one table: the case, what a safe proxy does, each proxy's outcome and an
ok/FAIL verdict per proxy. Everything is on loopback, bounded in count and
time (each wait is capped at WAIT_CAP seconds); the battery takes about a
minute. Only the standard library is used: upstream.py is the upstream, client.py
the raw HTTP/1.1 client, this file the cases, the proxies and the table.

Usage: hostile.py --tailgate BIN --nginx BIN --root REPO [--strict]
                  [--port-base N] [--out FILE | --no-write]
Exit status: 0, or 1 with --strict when Tailgate fails a case (2: the
battery itself could not run).
"""

import argparse
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from client import Response, connect, exchange, get, read_head, request, status_of, wait_closed
from upstream import BIG_BODY, UpstreamServer, UpstreamState

HERE = os.path.dirname(os.path.abspath(__file__))
BODY_LIMIT = 1 << 20  # both proxies: 1 MiB
WAIT_CAP = 8.0  # longest wait for a proxy to close a connection
TIMEOUT = "3s"  # the proxies' header/send/keep-alive timeouts where they exist
SLOW_CLIENTS = 10
SLOW_SECONDS = 3
# The upstream listens on two loopback addresses: the proxies send to PRIMARY,
# and to BACKUP only while PRIMARY is out of rotation (max_fails=1, 10 s).
PRIMARY, BACKUP = "127.0.0.1", "127.0.0.2"

# The timeouts both proxies are set to, and the keys each has for them. For
# Tailgate, the first candidate `tailgate check` accepts in [server] is used;
# none accepted prints "n/a" (its [server] has no such setting yet).
TIMEOUT_SETTINGS = [
    ("header (first byte, request head, HTTP/2 preface)", "client_header_timeout",
     ["client_header_timeout", "header_timeout", "first_byte_timeout"]),
    ("send (a client that does not read)", "send_timeout", ["send_timeout"]),
    ("keep-alive idle", "keepalive_timeout", ["keepalive_timeout", "idle_timeout"]),
]


# === after a case: was the primary address marked failed? ===


def next_request(proxy, up, path):
    """A plain request after a case: its status, and whether it went to the primary
    address (PRIMARY) or to the backup one, used only while the primary is out of
    rotation (Tailgate urls in failover order; nginx `backup`)."""
    mark = up.mark()
    status = get(proxy.port, path)
    addresses = [r["address"] for r in up.since(mark, path)]
    where = "primary" if addresses == [PRIMARY] else "backup" if addresses else "none"
    return status, where


def next_request_text(status, where):
    if where == "backup":
        return f"next request {status}, sent to the backup address: the primary was marked failed"
    return f"next request {status}"


def await_primary(proxy, up, cap=11.0):
    """Seconds until a plain request is a 200 from the primary address again (a previous
    case may have taken it out of rotation for fail_timeout), or None past cap."""
    start = time.monotonic()
    while time.monotonic() - start < cap:
        if next_request(proxy, up, "/healthy") == (200, "primary"):
            return time.monotonic() - start
        time.sleep(0.5)
    return None


def waited_note(waited):
    if waited is None:
        return " (the primary address was still out of rotation after 11 s)"
    if waited >= 1:
        return f" (first waited {waited:.0f} s for the primary address to be used again)"
    return ""


# === the cases ===
# Each takes the proxy (name, port, h2_port) and the upstream state and
# returns (outcome, ok).

def case_deny(proxy, up):
    mark = up.mark()
    statuses = [f"`{p}` {get(proxy.port, p)}" for p in ("//swagger", "/%73wagger", "/a/../swagger")]
    seen = up.since(mark, "wagger")
    ok = all(s.endswith((" 403", " 400", " 404")) for s in statuses) and not seen
    return f"{', '.join(statuses)}; upstream saw {len(seen)}", ok


def case_login(proxy, up):
    mark = up.mark()
    first = [get(proxy.port, "/user/login") for _ in range(3)]
    variants = [(p, get(proxy.port, p)) for p in ("//user/login", "/user/%6cogin")]
    seen = len(up.since(mark, "/user/"))
    ok = all(s != 200 for _, s in variants) and seen <= 3
    text = f"`/user/login` x3: {' '.join(map(str, first))}; " + ", ".join(f"`{p}` {s}" for p, s in variants)
    return f"{text}; upstream saw {seen} of 5", ok


def case_open_redirect(proxy, up):
    answer = exchange(proxy.port, request("GET", "//evil.example", "static.test"))
    if not isinstance(answer, Response):
        return answer, False
    location = answer.header("location")
    if location is None:
        return f"{answer.status}, no redirect", True
    bad = location.startswith("//") or location.startswith("/\\") or (
        "://" in location and location.split("://", 1)[1].split("/")[0].split(":")[0] != "static.test")
    return f"{answer.status} `Location: {location}`", not bad


def case_length_over(proxy, up):
    mark = up.mark()
    with connect(proxy.port) as s:
        s.sendall(request("POST", "/upload-length", "app.test", content_length=2 * BODY_LIMIT))
        try:
            s.settimeout(1)
            s.sendall(b"a" * 65536)
        except OSError:
            pass
        s.settimeout(5)
        status = status_of(read_head(s))
    seen = up.since(mark, "/upload-length")
    return f"{status}; reached the upstream {len(seen)}x", status == 413 and not seen


def send_in_background(s, pieces):
    def run():
        try:
            for piece in pieces:
                s.sendall(piece)
        except OSError:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def case_chunked_over(proxy, up):
    mark = up.mark()
    chunk = b"8000\r\n" + b"c" * 0x8000 + b"\r\n"
    pieces = [chunk] * (2 * BODY_LIMIT // 0x8000) + [b"0\r\n\r\n"]
    with connect(proxy.port, timeout=10) as s:
        s.sendall(request("POST", "/upload-chunked", "app.test", ["Transfer-Encoding: chunked"]))
        sender = send_in_background(s, pieces)
        status = status_of(read_head(s))
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sender.join(5)
    time.sleep(0.3)
    seen = up.since(mark, "/upload-chunked")
    got = sum(r["body"] for r in seen)
    return f"{status}; {got / 1024:.0f} KiB of body reached the upstream", status == 413 and got == 0


def case_bad_chunk(proxy, up):
    waited = await_primary(proxy, up)
    mark = up.mark()
    raw = request("POST", "/upload-bad-chunk", "app.test", ["Transfer-Encoding: chunked"])
    status = status_of(exchange(proxy.port, raw + b"zz\r\nhello\r\n0\r\n\r\n"))
    seen = up.since(mark, "/upload-bad-chunk")
    after = next_request(proxy, up, "/after-bad-chunk")
    text = f"{status}; reached the upstream {len(seen)}x; {next_request_text(*after)}{waited_note(waited)}"
    return text, status == 400 and after == (200, "primary")


def case_disconnect(proxy, up):
    waited = await_primary(proxy, up)
    with connect(proxy.port) as s:
        s.sendall(request("POST", "/upload-cut", "app.test", content_length=100000))
        s.sendall(b"d" * 10000)
        time.sleep(0.3)
    time.sleep(0.5)
    after = next_request(proxy, up, "/after-cut")
    return next_request_text(*after) + waited_note(waited), after == (200, "primary")


def case_slow_upload(proxy, up):
    waited = await_primary(proxy, up)
    mark = up.mark()
    sockets = []
    answered = 0
    try:
        for i in range(SLOW_CLIENTS):
            s = connect(proxy.port, timeout=10)
            sockets.append(s)
            s.sendall(request("POST", f"/slow-upload/{i}", "app.test", content_length=SLOW_SECONDS))
        for second in range(SLOW_SECONDS):
            time.sleep(1)
            if second == SLOW_SECONDS - 1:
                # Just before the last byte: what reached the upstream meanwhile.
                conns = up.accepted_since(mark)
                forwarded = len(up.since(mark, "/slow-upload/"))
            for s in sockets:
                s.sendall(b"u")
        for s in sockets:
            answered += status_of(read_head(s)) == 200
    finally:
        for s in sockets:
            s.close()
    text = (f"before the bodies were complete: {conns} upstream connections opened, "
            f"{forwarded}/{SLOW_CLIENTS} requests forwarded; then {answered}/{SLOW_CLIENTS} answered 200")
    return text + waited_note(waited), forwarded == 0


def case_h2c(proxy, up):
    mark = up.mark()
    status = get(proxy.port, "/h2c", headers=[
        "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"])
    seen = up.since(mark, "/h2c")
    upgrades = [r["upgrade"] for r in seen if r["upgrade"]]
    if upgrades:
        return f"{status}; upstream saw `Upgrade: {upgrades[0]}`", False
    return f"{status}; no Upgrade reached the upstream", True


def case_no_host(proxy, up):
    status = status_of(exchange(proxy.port, request("GET", "/no-host", None)))
    return str(status), status == 400


def case_two_hosts(proxy, up):
    mark = up.mark()
    status = status_of(exchange(proxy.port, request("GET", "/two-hosts", "app.test", ["Host: app.test"])))
    seen = up.since(mark, "/two-hosts")
    return f"{status}; upstream saw {len(seen)}", status == 400


def case_userinfo_host(proxy, up):
    mark = up.mark()
    status = status_of(exchange(proxy.port, request("GET", "/userinfo-host", "evil@app.test")))
    seen = up.since(mark, "/userinfo-host")
    hosts = [h for r in seen for h in r["host"]]
    as_is = [h for h in hosts if "@" in h]
    if as_is:
        return f"{status}; upstream got `Host: {as_is[0]}`", False
    text = f"{status}" + (f"; upstream got `Host: {hosts[0]}`" if hosts else "; not forwarded")
    return text, True


def case_silent(proxy, up):
    with connect(proxy.port) as s:
        closed = wait_closed(s, WAIT_CAP)
    return closed_text(closed), closed is not None


def case_h2_preface(proxy, up):
    with connect(proxy.h2_port) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM")  # 20 of the preface's 24 bytes
        closed = wait_closed(s, WAIT_CAP)
    return closed_text(closed), closed is not None


def closed_text(closed):
    return f"closed after {closed:.1f} s" if closed is not None else f"still open after {WAIT_CAP:.0f} s"


def case_slow_reader(proxy, up):
    # A small receive window: the proxy's socket buffer fills at once.
    with connect(proxy.port, timeout=5, rcvbuf=16384) as s:
        s.sendall(request("GET", "/big", "app.test"))
        time.sleep(WAIT_CAP)
        got, end = 0, "stalled"
        s.settimeout(2)
        try:
            while True:
                data = s.recv(1 << 20)
                if not data:
                    end = "closed"
                    break
                got += len(data)
        except ConnectionResetError:
            end = "reset"
        except socket.timeout:
            pass
    mib = f"{got / (1 << 20):.1f} of {BIG_BODY >> 20} MiB"
    if end == "stalled":
        return f"still open after {WAIT_CAP:.0f} s ({mib} readable, then nothing)", False
    # The head is part of `got`: a whole body means the proxy held on.
    if got >= BIG_BODY:
        return f"held {WAIT_CAP:.0f} s, then sent all {mib}", False
    return f"closed within {WAIT_CAP:.0f} s ({mib} had been sent)", True


CASES = [
    ("deny rule `^/swagger` bypass", "403 for each; upstream sees none", case_deny),
    ("login limit bypass (1r/m, burst 2)", "the variants count in the one limit: 429", case_login),
    ("static `GET //evil.example`", "Location never protocol-relative", case_open_redirect),
    ("`Upgrade: h2c`", "the upstream never sees the Upgrade", case_h2c),
    ("HTTP/1.1 without Host", "400", case_no_host),
    ("two Host headers", "400", case_two_hosts),
    ("`Host: evil@app.test`", "400, or not forwarded as is", case_userinfo_host),
    ("client disconnects mid-body", "the next request is a 200 from the primary (not marked failed)",
     case_disconnect),
    ("malformed chunk size", "400 (not 502); the primary not marked failed", case_bad_chunk),
    ("Content-Length 2 MiB (limit 1 MiB)", "413; upstream never contacted", case_length_over),
    ("chunked body 2 MiB (limit 1 MiB)", "413; no body byte reaches the upstream", case_chunked_over),
    (f"slow upload ({SLOW_CLIENTS} clients, 1 byte/s for {SLOW_SECONDS} s)",
     "nothing forwarded before the body is complete", case_slow_upload),
    ("silent connection (sends nothing)", f"closed within {WAIT_CAP:.0f} s", case_silent),
    ("partial HTTP/2 preface", f"closed within {WAIT_CAP:.0f} s", case_h2_preface),
    (f"slow reader of a {BIG_BODY >> 20} MiB response", f"closed within {WAIT_CAP:.0f} s", case_slow_reader),
]
# These only wait on a connection: run together, each on its own thread.
WAITING_CASES = {case_silent, case_h2_preface, case_slow_reader}


def run_cases(proxy, up):
    results = {}

    def run(fn):
        try:
            results[fn] = fn(proxy, up)
        except Exception as error:  # a case that breaks is a failed case, with the reason
            results[fn] = (f"error: {type(error).__name__}: {error}", False)

    for _, _, fn in CASES:
        if fn not in WAITING_CASES:
            log(f"{proxy.name}: {fn.__name__}")
            run(fn)
    log(f"{proxy.name}: the waiting cases, together (up to ~{WAIT_CAP + 2:.0f} s)")
    threads = [threading.Thread(target=run, args=(fn,)) for _, _, fn in CASES if fn in WAITING_CASES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[fn] for _, _, fn in CASES]


# === the proxies ===

class Proxy:
    def __init__(self, name, port, h2_port, command, log_path):
        self.name, self.port, self.h2_port = name, port, h2_port
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail(f"{self.name} exited ({self.process.returncode}); see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        fail(f"{self.name} does not listen on {self.port} after 30 s; see {self.log_path}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def render(template, out, values):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    with open(out, "w") as f:
        f.write(text)


def tailgate_timeout_keys(tailgate, run_dir):
    """For each of TIMEOUT_SETTINGS, the [server] key this Tailgate accepts, or None."""
    keys = []
    for _, _, candidates in TIMEOUT_SETTINGS:
        found = None
        for key in candidates:
            probe = os.path.join(run_dir, "probe.toml")
            with open(probe, "w") as f:
                f.write(f'[server]\nlisten = ["127.0.0.1:1"]\n{key} = "{TIMEOUT}"\n\n'
                        '[upstreams.u]\nurl = "http://127.0.0.1:1"\n\n'
                        '[[routes]]\nname = "r"\nhosts = ["*"]\npath = "/"\nupstream = "u"\n')
            checked = subprocess.run([tailgate, "check", probe], capture_output=True)
            if checked.returncode == 0:
                found = key
                break
        keys.append(found)
    return keys


def sanity(proxy):
    """The config does what the cases assume, or the battery stops."""
    for path, host, want in (("/", "app.test", 200), ("/swagger", "app.test", 403),
                             ("/", "static.test", 200), ("/", "unknown.test", 404)):
        got = get(proxy.port, path, host)
        if got != want:
            fail(f"{proxy.name}: GET {path} (Host {host}) is {got}, not {want}: the config is not what the cases assume")


def log(message):
    print(f"hostile: {message}", file=sys.stderr, flush=True)


def fail(message):
    log(f"error: {message}")
    raise SystemExit(2)


def table(rows):
    lines = ["| case | a safe proxy | nginx | | Tailgate | |", "|---|---|---|---|---|---|"]
    for (title, safe, _), (n_text, n_ok), (t_text, t_ok) in zip(CASES, rows["nginx"], rows["tailgate"]):
        cell = lambda text: text.replace("|", "\\|")
        lines.append(f"| {title} | {safe} | {cell(n_text)} | {'ok' if n_ok else 'FAIL'} "
                     f"| {cell(t_text)} | {'ok' if t_ok else 'FAIL'} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tailgate", required=True)
    parser.add_argument("--nginx", required=True)
    parser.add_argument("--root", required=True, help="the repository (plugins, git version)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when Tailgate fails a case")
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("HOSTILE_PORT_BASE", 28300)))
    parser.add_argument("--out", help="results file (default bench/results/hostile-<date>.md)")
    parser.add_argument("--no-write", action="store_true", help="print only; write no results file")
    args = parser.parse_args()

    base = args.port_base
    up_port, n_port, n_h2_port, t_port, t_admin = base, base + 1, base + 2, base + 3, base + 4
    for address, port in [(PRIMARY, p) for p in range(base, base + 5)] + [(BACKUP, base)]:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            fail(f"port {port} is in use (--port-base or HOSTILE_PORT_BASE moves the 5 ports)")
        except OSError:
            pass

    run_dir = tempfile.mkdtemp(prefix="tailgate-hostile.")
    log(f"run folder: {run_dir}")
    os.makedirs(os.path.join(run_dir, "www", "evil.example"))
    os.makedirs(os.path.join(run_dir, "nginx-tmp"))
    os.makedirs(os.path.join(run_dir, "plugin-cache"))
    for page in ("index.html", "evil.example/index.html"):
        with open(os.path.join(run_dir, "www", page), "w") as f:
            f.write("<p>static</p>\n")

    state = UpstreamState()
    upstreams = [UpstreamServer(address, up_port, state) for address in (PRIMARY, BACKUP)]
    for upstream in upstreams:
        threading.Thread(target=upstream.serve_forever, daemon=True).start()

    keys = tailgate_timeout_keys(args.tailgate, run_dir)
    values = {
        "RUN": run_dir, "ROOT": args.root, "UPSTREAM_PORT": str(up_port),
        "PRIMARY": PRIMARY, "BACKUP": BACKUP,
        "USER": "user root;" if os.geteuid() == 0 else "",
        "SERVER_TIMEOUTS": "\n".join(f'{k} = "{TIMEOUT}"' for k in keys if k),
    }
    render("nginx.conf.in", os.path.join(run_dir, "nginx.conf"),
           dict(values, PORT=str(n_port), H2_PORT=str(n_h2_port)))
    render("tailgate.toml.in", os.path.join(run_dir, "tailgate.toml"),
           dict(values, PORT=str(t_port), ADMIN_PORT=str(t_admin)))
    checked = subprocess.run([args.tailgate, "check", os.path.join(run_dir, "tailgate.toml")],
                             capture_output=True, text=True)
    if checked.returncode != 0:
        fail(f"tailgate check: {checked.stderr.strip()}")

    nginx_version = subprocess.run([args.nginx, "-v"], capture_output=True, text=True).stderr.strip()
    head = subprocess.run(["git", "-C", args.root, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", args.root, "diff", "--quiet", "HEAD", "--", "host"]).returncode != 0
    built = datetime.datetime.fromtimestamp(os.path.getmtime(args.tailgate), datetime.timezone.utc)
    versions = (f"tailgate at {head}{'+uncommitted' if dirty else ''} ({args.tailgate}, built "
                f"{built:%Y-%m-%dT%H:%MZ}), {nginx_version.replace('nginx version: ', '')}")

    proxies = [
        ("nginx", lambda: Proxy("nginx", n_port, n_h2_port,
                                [args.nginx, "-p", run_dir, "-c", os.path.join(run_dir, "nginx.conf")],
                                os.path.join(run_dir, "nginx-stderr.log"))),
        ("tailgate", lambda: Proxy("tailgate", t_port, t_port,
                                   [args.tailgate, "run", "--config", os.path.join(run_dir, "tailgate.toml")],
                                   os.path.join(run_dir, "tailgate.log"))),
    ]
    rows = {}
    started = time.monotonic()
    for name, start in proxies:
        proxy = start()
        try:
            proxy.wait_ready()
            sanity(proxy)
            rows[name] = run_cases(proxy, state)
        finally:
            proxy.stop()
    for upstream in upstreams:
        upstream.shutdown()
    elapsed = time.monotonic() - started

    t_passed = sum(ok for _, ok in rows["tailgate"])
    n_passed = sum(ok for _, ok in rows["nginx"])
    summary = (f"Tailgate: {t_passed} passed, {len(CASES) - t_passed} failed "
               f"(nginx: {n_passed} passed, {len(CASES) - n_passed} failed)")
    settings = ["| timeout | nginx | Tailgate `[server]` |", "|---|---|---|"]
    for (what, nginx_key, _), key in zip(TIMEOUT_SETTINGS, keys):
        tailgate_cell = f'`{key} = "{TIMEOUT}"`' if key else "n/a"
        settings.append(f"| {what} | `{nginx_key} {TIMEOUT}` | {tailgate_cell} |")
    now = datetime.datetime.now(datetime.timezone.utc)
    report = "\n".join([
        f"# Hostile input: Tailgate vs. nginx, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"- versions: {versions}",
        f"- machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}",
        f"- setup: one upstream (bench/hostile/hostile.py) on {PRIMARY} and, as the backup "
        f"address used only while the primary is marked failed, {BACKUP}; one worker per proxy, "
        "configs bench/hostile/nginx.conf.in and tailgate.toml.in; "
        f"every wait capped at {WAIT_CAP:.0f} s; battery took {elapsed:.0f} s",
        "",
        "\n".join(settings),
        "",
        table(rows),
        "",
        summary,
        "",
    ])
    print(report)
    if not args.no_write:
        out = args.out or os.path.join(args.root, "bench", "results", f"hostile-{now:%Y-%m-%d-%H%M}.md")
        with open(out, "w") as f:
            f.write(report)
        log(f"written: {out}")
    shutil.rmtree(run_dir, ignore_errors=True)
    if args.strict and t_passed < len(CASES):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
