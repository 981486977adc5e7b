"""bindcar's benchmark: prints figures, asserts nothing.  Run: make bench

Everything runs against a private named on loopback started here, so the
figures in one run compare like with like.
"""

import http.server
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import TOKEN, Bindcar, NamedServer, free_port  # noqa: E402
from externaldns import ExternalDNS, endpoint  # noqa: E402
from test_hostile import (ATTACKERS, call_from, connect_from, header_flood,  # noqa: E402
                          keep_alive_from)

import dns_proto  # noqa: E402
import zonefile  # noqa: E402

ROUNDS = {"status": 3000, "zonestatus": 3000, "addzone+delzone": 500}
PROCESS_ROUNDS = 60             # a new `rndc` process each time is slow: fewer rounds
MAX_SECONDS = 60                # per measurement, whatever the round count


def measure(fn, rounds):
    """Times of ``fn(i)`` in milliseconds, for at most ``rounds`` calls or MAX_SECONDS."""
    times, stop = [], time.monotonic() + MAX_SECONDS
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
        if time.monotonic() > stop:
            break
    return times


def summary(times):
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, len(ordered)


def zone_file(named, zone):
    with open(os.path.join(named.dir, f"{zone}.zone"), "w") as f:
        f.write(f"$TTL 300\n@ SOA ns1.{zone}. admin.{zone}. 1 3600 600 604800 300\n"
                f"@ NS ns1.{zone}.\nns1 A 127.0.0.1\n")
    return f"{zone}.zone"


def bench_rndc(named, rows):
    client = named.client()
    client.call("status")
    rndc = ["rndc", "-c", named.rndc_conf]
    kept = {
        "status": lambda i: client.call("status"),
        "zonestatus": lambda i: client.call("zonestatus static.test"),
    }
    spawned = {
        "status": lambda i: subprocess.run(rndc + ["status"], capture_output=True, check=True),
        "zonestatus": lambda i: subprocess.run(rndc + ["zonestatus", "static.test"],
                                               capture_output=True, check=True),
    }
    for kind, runs in (("kept", ROUNDS["addzone+delzone"]), ("spawned", PROCESS_ROUNDS)):
        for i in range(runs):
            zone_file(named, f"{kind}{i}.bench")

    def add_del(i):
        client.call(f'addzone kept{i}.bench {{ type primary; file "kept{i}.bench.zone"; }};')
        client.call(f"delzone kept{i}.bench")

    def add_del_rndc(i):
        subprocess.run(rndc + ["addzone", f"spawned{i}.bench",
                               f'{{ type primary; file "spawned{i}.bench.zone"; }};'],
                       capture_output=True, check=True)
        subprocess.run(rndc + ["delzone", f"spawned{i}.bench"], capture_output=True, check=True)

    kept["addzone+delzone"], spawned["addzone+delzone"] = add_del, add_del_rndc
    for name in ROUNDS:
        ours = summary(measure(kept[name], ROUNDS[name]))
        theirs = summary(measure(spawned[name], PROCESS_ROUNDS))
        rows.append((f"rndc {name}", ours, theirs, theirs[0] / ours[0]))


def bench_dns(named, rows, lines):
    """UPDATE on dns_proto's kept-open connection, beside nsupdate run once per change
    (the Rust bindcar's way) and one nsupdate process sending every change (named's own
    cost); AXFR of 20,000 records beside dig."""
    secret = named.secrets["hmac-sha256"]
    with open(os.path.join(named.dir, "dns.bench.zone"), "w") as f:
        f.write("$TTL 300\n@ SOA ns1.dns.bench. admin.dns.bench. 1 3600 600 604800 300\n"
                "@ NS ns1.dns.bench.\nns1 A 127.0.0.1\n")
        f.writelines(f"h{i} A 10.0.{i >> 8 & 255}.{i & 255}\n" for i in range(20000))
    named.client().call('addzone dns.bench { type primary; file "dns.bench.zone"; '
                        'allow-update { key "update-key"; }; allow-transfer { key "update-key"; }; };')
    client = dns_proto.DnsClient("127.0.0.1", named.dns_port, "update-key", "hmac-sha256", secret)
    ours = summary(measure(lambda i: client.update("dns.bench", add=[dns_proto.Record(
        f"u{i}.dns.bench.", 300, "A", "192.0.2.1")]), 500))
    nsupdate = ["nsupdate", "-y", f"hmac-sha256:update-key:{secret}"]
    head = f"server 127.0.0.1 {named.dns_port}\nzone dns.bench\n"
    spawned = summary(measure(lambda i: subprocess.run(
        nsupdate, input=f"{head}update add p{i}.dns.bench. 300 A 192.0.2.1\nsend\n",
        text=True, capture_output=True, check=True), PROCESS_ROUNDS))
    rows.append(("DNS UPDATE, one A record", ours, spawned, spawned[0] / ours[0]))
    changes = 500
    script = head + "".join(f"update add b{i}.dns.bench. 300 A 192.0.2.1\nsend\n"
                            for i in range(changes))
    started = time.perf_counter()
    subprocess.run(nsupdate, input=script, text=True, capture_output=True, check=True)
    own = (time.perf_counter() - started) * 1000 / changes
    lines.append(f"DNS UPDATE: ours p50 {ours[0]:.3f} ms; one nsupdate process sending "
                 f"{changes} changes (named's own cost) {own:.3f} ms a change: "
                 f"{ours[0] / own:.2f}x of it; nsupdate run once per change {spawned[0]:.1f} ms: "
                 f"ours is {spawned[0] / ours[0]:.0f}x faster")
    started = time.perf_counter()
    records = client.axfr("dns.bench")
    ours_ms = (time.perf_counter() - started) * 1000
    tracemalloc.start()                         # a second transfer, for its memory only
    client.axfr("dns.bench")
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        dig = subprocess.Popen(["dig", "@127.0.0.1", "-p", str(named.dns_port), "-y",
                                f"hmac-sha256:update-key:{secret}", "dns.bench", "AXFR"],
                               stdout=out, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(dig.pid, 0)          # this child's own peak RSS
        dig_ms = (time.perf_counter() - started) * 1000
        dig.returncode = 0                          # reaped by wait4 above
    lines.append(f"AXFR of {len(records):,} records: ours {ours_ms:.0f} ms, {peak:.1f} MB "
                 f"allocated at peak (tracemalloc); dig {dig_ms:.0f} ms, peak RSS "
                 f"{usage.ru_maxrss / 1024:.1f} MB")
    client.close()
    named.client().call("delzone dns.bench")


def zone_body(records):
    kinds = [("A", "192.0.2.{}"), ("AAAA", "2001:db8::{:x}"), ("TXT", "text number {}"),
             ("MX", "10 mail{}.example.com."), ("CNAME", "target{}.example.com.")]
    return {"zoneName": "bench.example", "zoneType": "primary", "zoneConfig": {
        "ttl": 3600, "soa": {"primaryNs": "ns1.bench.example.", "adminEmail": "admin@bench.example"},
        "nameServers": ["ns1.bench.example."], "nameServerIps": {"ns1.bench.example.": "192.0.2.1"},
        "records": [{"name": f"h{i}", "type": kinds[i % 5][0],
                     "value": kinds[i % 5][1].format(i % 250 + 1)} for i in range(records)]}}


def bench_zonefile(rows):
    with tempfile.TemporaryDirectory() as d:
        for size, rounds in ((10, 2000), (10_000, 10)):
            body = zone_body(size)
            zone = zonefile.parse_zone(body)
            text = zonefile.render_zone_file(zone)
            path = os.path.join(d, "bench.example.zone")
            parse = summary(measure(lambda i: zonefile.parse_zone(body), rounds))
            render = summary(measure(lambda i: zonefile.render_zone_file(zone), rounds))
            both = summary(measure(lambda i: zonefile.render_zone_file(
                zonefile.parse_zone(body)), rounds))
            write = summary(measure(lambda i: zonefile.write_zone_file(path, text, replace=True),
                                    min(rounds, 200)))
            rows.append((f"zone {size} records: parse", parse, None, None))
            rows.append((f"zone {size} records: render", render, None, None))
            rows.append((f"zone {size} records: parse+render", both, None, None))
            rows.append((f"zone {size} records: write+fsync", write, None, None))


API_ROUNDS = 200
WRK_SECONDS = 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BareHandler(http.server.BaseHTTPRequestHandler):
    """The least a ThreadingHTTPServer can do: one sendall per answer, keep-alive."""
    protocol_version = "HTTP/1.1"
    body = b'{"status":"healthy"}'
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(body)).encode() + b"\r\n\r\n" + body)

    def do_GET(self):
        self.wfile.write(self.reply)

    def log_message(self, *args):
        pass


class BareServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass                                    # wrk resets its connections at the end


def wrk(port, path="/health"):
    """(requests/s, p50 ms, p99 ms, max ms) from wrk over 10 keep-alive connections."""
    out = subprocess.run(["wrk", "-t2", "-c10", f"-d{WRK_SECONDS}s", "--latency",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=WRK_SECONDS + 30).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def ms(text):
        number, suffix = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(number) * unit[suffix]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    worst = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1))
    return rps, p50, p99, worst


def bench_health(server, lines):
    if not shutil.which("wrk"):
        lines.append("GET /health: wrk is not installed (apt-get install wrk)")
        return
    bare = BareServer(("127.0.0.1", free_port()), BareHandler)
    threading.Thread(target=bare.serve_forever, daemon=True).start()
    try:
        theirs = wrk(bare.server_address[1])
    finally:
        bare.shutdown()
        bare.server_close()
    ours = wrk(server.port)
    for name, (rps, p50, p99, worst) in (("bindcar GET /health", ours),
                                         ("bare ThreadingHTTPServer", theirs)):
        lines.append(f"{name:<26} {rps:>9.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                     f"max {worst:.2f} ms")
    lines.append(f"bindcar / bare: {ours[0] / theirs[0]:.2f}x requests/s "
                 "(wrk, 10 keep-alive connections, one run each)")


def api_zone(name, key=None):
    body = {"zoneName": name, "zoneType": "primary", "zoneConfig": {
        "ttl": 300, "soa": {"primaryNs": f"ns1.{name}.", "adminEmail": f"admin@{name}"},
        "nameServers": [f"ns1.{name}."], "nameServerIps": {f"ns1.{name}.": "127.0.0.1"},
        "records": [{"name": "www", "type": "A", "value": "192.0.2.10"}]}}
    if key:
        body["updateKeyName"] = key
    return body


class Api:
    """One keep-alive connection to bindcar; ``call`` asserts the status."""

    def __init__(self, server):
        self.conn = server.connection()
        self.headers = {"Authorization": f"Bearer {server.env['BIND_API_TOKEN']}",
                        "Content-Type": "application/json"}

    def call(self, method, path, body=None, want=200):
        self.conn.request(method, path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        assert resp.status == want, (method, path, resp.status, data)
        return data


class Lean:
    """Api's calls over a bare keep-alive socket: what bindcar adds, without the ~65 µs of
    Python's http.client on each call (bindy's Rust client costs next to nothing)."""

    def __init__(self, server):
        self.port, self.sock = server.port, None
        self.head = (f"Host: 127.0.0.1\r\nAuthorization: Bearer "
                     f"{server.env['BIND_API_TOKEN']}\r\nContent-Type: application/json\r\n")

    def call(self, method, path, body=None, want=200, headers=""):
        """One request; on a new connection when bindcar closed the idle one (30 s).
        ``headers``: more header lines; the answer's head is kept as ``last_head``."""
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port))
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buffer = b""
            try:
                return self._call(method, path, body, want, headers)
            except ConnectionError:
                self.sock.close()
                self.sock = None
                if attempt == 2:
                    raise

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("bindcar closed the connection")
        self.buffer += data

    def _call(self, method, path, body, want, headers=""):
        body = (body or "").encode()
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\n{self.head}{headers}Content-Length: "
                          f"{len(body)}\r\n\r\n".encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(self.buffer) < length:
            self._recv()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        assert int(head.split()[1]) == want, (method, path, head, data)
        self.last_head = head
        return data


class Raw:
    """The same work without bindcar: fsync'd writes and RNDC on a kept-open connection."""

    def __init__(self, named, zone_dir):
        self.client, self.zone_dir = named.client(), zone_dir

    def create(self, name, key=None):
        self.create_prepared(self.prepare(name, key))

    def prepare(self, name, key=None):
        """The zone's name, path, file text and clause: made before a clock starts, what
        ``create_prepared`` then times is named's own cost and the disk's."""
        path = os.path.join(self.zone_dir, f"{name}.zone")
        zone = zonefile.parse_zone(api_zone(name, key))
        return name, path, zonefile.render_zone_file(zone), \
            zonefile.render_zone_clause(zone, path)

    def create_prepared(self, prepared):
        name, path, text, clause = prepared
        zonefile.write_zone_file(path, text)
        self.client.call(f"addzone {name} {clause}")

    def delete(self, name):
        self.client.call(f"delzone {name}")
        zonefile.remove_zone_files(self.zone_dir, name)


def bench_operations(named, server, rows, existing, rounds):
    """Each operation through the API, each call beside its raw cost, interleaved."""
    api, raw = Api(server), Raw(named, server.zone_dir)
    tag = f"e{existing}"
    ours = {op: [] for op in ("create", "status", "reload", "freeze+thaw", "notify", "delete")}
    base = {op: [] for op in ours}

    def timed(samples, fn):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)

    api.call("POST", "/api/v1/zones", json.dumps(api_zone(f"dyn-api-{tag}.bench", "update-key")),
             201)
    raw.create(f"dyn-raw-{tag}.bench", "update-key")
    bodies = [json.dumps(api_zone(f"api{i}-{tag}.bench")) for i in range(rounds)]
    for i in range(rounds):
        a, r = f"api{i}-{tag}.bench", f"raw{i}-{tag}.bench"
        timed(ours["create"], lambda: api.call("POST", "/api/v1/zones", bodies[i], 201))
        timed(base["create"], lambda: raw.create(r))
        timed(ours["status"], lambda: api.call("GET", f"/api/v1/zones/{a}/status"))
        timed(base["status"], lambda: raw.client.call(f"zonestatus {r}"))
        timed(ours["reload"], lambda: api.call("POST", f"/api/v1/zones/{a}/reload"))
        timed(base["reload"], lambda: raw.client.call(f"reload {r}"))
        timed(ours["notify"], lambda: api.call("POST", f"/api/v1/zones/{a}/notify"))
        timed(base["notify"], lambda: raw.client.call(f"notify {r}"))
        timed(ours["freeze+thaw"], lambda: (
            api.call("POST", f"/api/v1/zones/dyn-api-{tag}.bench/freeze"),
            api.call("POST", f"/api/v1/zones/dyn-api-{tag}.bench/thaw")))
        timed(base["freeze+thaw"], lambda: (raw.client.call(f"freeze dyn-raw-{tag}.bench"),
                                            raw.client.call(f"thaw dyn-raw-{tag}.bench")))
    for i in range(rounds):
        timed(ours["delete"], lambda: api.call("DELETE", f"/api/v1/zones/api{i}-{tag}.bench"))
        timed(base["delete"], lambda: raw.delete(f"raw{i}-{tag}.bench"))
    api.call("DELETE", f"/api/v1/zones/dyn-api-{tag}.bench")
    raw.delete(f"dyn-raw-{tag}.bench")
    for op in ours:
        o, b = summary(ours[op]), summary(base[op])
        rows.append((f"API {op}, {existing} zones", o, b, o[0] / b[0]))


RECORD_ROUNDS = 300


def bench_records(named, server, rows, lines):
    """Record add, replace and delete through bindcar (a lean HTTP client), each beside the
    same DNS exchanges made with dns_proto alone (so the ratio is what bindcar's HTTP layer
    adds) and beside nsupdate run once per change (the Rust bindcar's way); GET of a
    1,000-record zone."""
    api, secret = Lean(server), named.secrets["hmac-sha256"]
    for name in ("rec-api.bench", "rec-raw.bench", "rec-nsupdate.bench"):
        api.call("POST", "/api/v1/zones", json.dumps(api_zone(name, "update-key")), 201)
    client = dns_proto.DnsClient("127.0.0.1", named.dns_port, "update-key", "hmac-sha256",
                                 secret)
    path = "/api/v1/zones/rec-api.bench/records"
    nsupdate = ["nsupdate", "-y", f"hmac-sha256:update-key:{secret}"]
    head = f"server 127.0.0.1 {named.dns_port}\nzone rec-nsupdate.bench\n"

    def spawn(lines_):
        subprocess.run(nsupdate, input=head + lines_ + "send\n", text=True,
                       capture_output=True, check=True)

    def raw_values(owner):
        return [(owner, "A", r.value) for r in client.query(owner, "A")]

    ours = {op: [] for op in ("add", "replace", "delete")}
    raw = {op: [] for op in ours}
    spawned = {op: [] for op in ours}

    def timed(samples, fn):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)

    for i in range(RECORD_ROUNDS):
        a, r = f"h{i}.rec-api.bench.", f"h{i}.rec-raw.bench."
        timed(ours["add"], lambda: api.call("POST", path, json.dumps(
            {"name": f"h{i}", "type": "A", "value": "192.0.2.1"}), 201))
        timed(raw["add"], lambda: client.update("rec-raw.bench", add=[dns_proto.Record(
            r, 3600, "A", "192.0.2.1")], forbid=[(r, "CNAME")]))
        timed(ours["replace"], lambda: api.call("PUT", path, json.dumps(
            {"name": f"h{i}", "type": "A", "currentValue": "192.0.2.1",
             "newValue": "192.0.2.2"})))
        timed(raw["replace"], lambda: client.update(
            "rec-raw.bench", add=[dns_proto.Record(r, 3600, "A", "192.0.2.2")],
            require=raw_values(r), then_delete=[(r, "A", "192.0.2.1")]))
        timed(ours["delete"], lambda: api.call("DELETE", path, json.dumps(
            {"name": f"h{i}", "type": "A", "value": "192.0.2.2"})))
        timed(raw["delete"], lambda: client.update(
            "rec-raw.bench", require=raw_values(r), delete=[(r, "A", "192.0.2.2")]))
        assert a not in [rec.name for rec in client.query(a, "A")]
        if i < PROCESS_ROUNDS:
            n = f"h{i}.rec-nsupdate.bench."
            timed(spawned["add"], lambda: spawn(f"update add {n} 3600 A 192.0.2.1\n"))
            timed(spawned["replace"], lambda: spawn(
                f"prereq yxrrset {n} A 192.0.2.1\nupdate add {n} 3600 A 192.0.2.2\n"
                f"update delete {n} A 192.0.2.1\n"))
            timed(spawned["delete"], lambda: spawn(f"update delete {n} A 192.0.2.2\n"))
    for op in ours:
        o, b, s = summary(ours[op]), summary(raw[op]), summary(spawned[op])
        rows.append((f"API record {op}", o, b, o[0] / b[0]))
        lines.append(f"record {op}: bindcar p50 {o[0]:.3f} ms, p99 {o[1]:.3f} ms; dns_proto "
                     f"alone p50 {b[0]:.3f} ms ({o[0] / b[0]:.2f}x); nsupdate run once per "
                     f"change p50 {s[0]:.1f} ms: bindcar is {s[0] / o[0]:.0f}x faster")
    records = [{"name": f"n{i}", "type": "A", "value": f"10.0.{i >> 8}.{i & 255}"}
               for i in range(1000)]
    body = api_zone("rec-list.bench", "update-key")
    body["zoneConfig"]["records"] += records
    api.call("POST", "/api/v1/zones", json.dumps(body), 201)
    listing = summary(measure(lambda i: api.call(
        "GET", "/api/v1/zones/rec-list.bench/records"), 100))
    rows.append(("API GET records, 1,003 records", listing, None, None))
    for name in ("rec-api.bench", "rec-raw.bench", "rec-nsupdate.bench", "rec-list.bench"):
        api.call("DELETE", f"/api/v1/zones/{name}")
    client.close()


CONDITIONAL_ROUNDS = 300        # record adds with If-Match, and as many without


def bench_conditional(server, lines, rounds=CONDITIONAL_ROUNDS):
    """A record add with If-Match (the ETag the change before answered, as a client
    chains them) beside the same add without it, interleaved call by call."""
    api = Lean(server)
    api.call("POST", "/api/v1/zones", json.dumps(api_zone("cond.bench", "update-key")), 201)
    path = "/api/v1/zones/cond.bench/records"
    plain, conditional = [], []
    api.call("GET", path)
    etag = re.search(rb"(?i)etag: *(\S+)", api.last_head).group(1).decode()
    for i in range(rounds):
        body = json.dumps({"name": f"p{i}", "type": "A", "value": "192.0.2.1"})
        plain += measure(lambda _: api.call("POST", path, body, 201), 1)
        etag = re.search(rb"(?i)etag: *(\S+)", api.last_head).group(1).decode()
        body = json.dumps({"name": f"c{i}", "type": "A", "value": "192.0.2.1"})
        conditional += measure(lambda _: api.call("POST", path, body, 201,
                                                  f"If-Match: {etag}\r\n"), 1)
    p, c = summary(plain), summary(conditional)
    lines.append(f"record add with If-Match (the last ETag): p50 {c[0]:.3f} ms, p99 "
                 f"{c[1]:.3f} ms; without: p50 {p[0]:.3f} ms, p99 {p[1]:.3f} ms: "
                 f"{c[0] / p[0]:.2f}x")
    api.call("DELETE", "/api/v1/zones/cond.bench")


WEBHOOK_ROUNDS = 40             # GET /records cold and warm; POSTs of 100 changes


def bench_webhook(named, directory, lines, rounds=WEBHOOK_ROUNDS):
    """external-dns's calls, as its client makes them (tests/externaldns.py): GET /records
    of a 1,003-record zone cold (changed before each: a transfer) and warm (an SOA query
    only); one POST /records of 100 creates beside one nsupdate of the same 100 adds."""
    port = free_port()
    zone_dir = os.path.join(directory, "webhook-zones")
    os.makedirs(zone_dir)
    server = Bindcar(named, zone_dir, WEBHOOK_ADDRESS=f"127.0.0.1:{port}").start()
    try:
        api, client = Lean(server), ExternalDNS(port)
        body = api_zone("hook.bench", "update-key")
        body["zoneConfig"]["records"] += [
            {"name": f"n{i}", "type": "A", "value": f"10.0.{i >> 8}.{i & 255}"}
            for i in range(1000)]
        api.call("POST", "/api/v1/zones", json.dumps(body), 201)
        api.call("POST", "/api/v1/zones", json.dumps(api_zone("spawn.bench", "update-key")),
                 201)
        secret = named.secrets["hmac-sha256"]
        dns = dns_proto.DnsClient("127.0.0.1", named.dns_port, "update-key", "hmac-sha256",
                                  secret)
        count = len(client.records())
        cold, warm = [], []
        for i in range(rounds):
            dns.update("hook.bench", add=[dns_proto.Record("tick.hook.bench.", 60, "TXT",
                                                           f'"{i}"')],
                       delete=[("tick.hook.bench.", "TXT", None)])
            cold += measure(lambda _: client.records(), 1)
            warm += measure(lambda _: client.records(), 1)
        c, w = summary(cold), summary(warm)
        lines.append(f"webhook GET /records, {count} record sets in one zone: cold (a "
                     f"transfer) p50 {c[0]:.2f} ms, p99 {c[1]:.2f} ms; warm (the SOA serial "
                     f"alone) p50 {w[0]:.2f} ms, p99 {w[1]:.2f} ms: warm {w[0] / c[0]:.2f}x cold")
        nsupdate = ["nsupdate", "-y", f"hmac-sha256:update-key:{secret}"]
        ours, spawned = [], []
        for i in range(rounds):
            names = [f"r{i}-{j}" for j in range(100)]
            creates = [endpoint(f"{n}.hook.bench", "A", "192.0.2.1") for n in names]
            ours += measure(lambda _: client.apply(create=creates), 1)
            client.apply(delete=creates)
            script = (f"server 127.0.0.1 {named.dns_port}\nzone spawn.bench\n"
                      + "".join(f"update add {n}.spawn.bench. 3600 A 192.0.2.1\n"
                                for n in names) + "send\n")
            spawned += measure(lambda _: subprocess.run(nsupdate, input=script, text=True,
                                                        capture_output=True, check=True), 1)
            dns.update("spawn.bench", delete=[(f"{n}.spawn.bench.", "A", None) for n in names])
        o, n = summary(ours), summary(spawned)
        lines.append(f"webhook POST /records of 100 creates (one UPDATE): p50 {o[0]:.2f} ms, "
                     f"p99 {o[1]:.2f} ms; one nsupdate of the same 100 adds p50 {n[0]:.2f} ms "
                     f"({n[0] / o[0]:.1f}x bindcar's)")
        dns.close()
        for name in ("hook.bench", "spawn.bench"):
            api.call("DELETE", f"/api/v1/zones/{name}")
    finally:
        server.stop()


CATALOG_ROUNDS = 200             # creates timed with the catalog on, and as many off
PROPAGATION_ROUNDS = 40


def bench_catalog(directory, rows, lines):
    """A primary and a secondary following bindcar's catalog.  Create p50 with the catalog
    on beside off (two bindcars on one named, creates interleaved), before the secondary
    starts: in production it runs on a host of its own, here it would share the cores.
    Then the time from a create's POST to the secondary answering for the zone, with an
    empty catalog and with 1,000 members more (the secondary caught up first)."""
    from test_catalog import secondary_conf
    os.mkdir(directory)
    for part in ("primary", "secondary", "on", "off"):
        os.mkdir(os.path.join(directory, part))
    primary = NamedServer(os.path.join(directory, "primary"), notify="explicit").start()
    options, zone = secondary_conf("catalog.bench", primary)
    secondary = NamedServer(os.path.join(directory, "secondary"), options, zone)
    on = Bindcar(primary, os.path.join(directory, "on"), BIND_CATALOG_ZONE="catalog.bench",
                 BIND_SECONDARIES=f"127.0.0.1:{secondary.dns_port}").start()
    off = Bindcar(primary, os.path.join(directory, "off")).start()
    client = dns_proto.DnsClient("127.0.0.1", secondary.dns_port)

    def served(name):
        try:
            return bool(client.query(f"www.{name}", "A"))
        except dns_proto.DnsError:
            return False

    def wait_for(names, seconds):
        deadline, names = time.monotonic() + seconds, list(names)
        while names and time.monotonic() < deadline:
            names = [name for name in names if not served(name)]
            time.sleep(0.005 if len(names) < 5 else 0.5)
        return not names

    try:
        while on.request("GET", "/api/v1/catalog")[0] != 200:
            time.sleep(0.01)
        api_on, api_off = Lean(on), Lean(off)
        times_on, times_off = [], []
        for i in range(CATALOG_ROUNDS):
            for api, times, name in ((api_on, times_on, f"on{i}.bench"),
                                     (api_off, times_off, f"off{i}.bench")):
                body = json.dumps(api_zone(name))
                start = time.perf_counter()
                api.call("POST", "/api/v1/zones", body, 201)
                times.append((time.perf_counter() - start) * 1000)
        o, b = summary(times_on), summary(times_off)
        rows.append(("API create, catalog on/off", o, b, o[0] / b[0]))
        for i in range(CATALOG_ROUNDS):
            api_on.call("DELETE", f"/api/v1/zones/on{i}.bench")
        secondary.start()
        for existing in (0, 1000):
            if existing:
                names = [f"many{i}.bench" for i in range(existing)]
                for name in names:
                    api_on.call("POST", "/api/v1/zones", json.dumps(api_zone(name)), 201)
                began = time.perf_counter()
                caught_up = wait_for(names, 300)
                lines.append(f"the secondary served {existing:,} zones created at once "
                             f"{time.perf_counter() - began:.1f} s after the last POST "
                             f"(all: {caught_up})")
            members = on.request("GET", "/api/v1/catalog")[1]["members"]
            waits = []
            for i in range(PROPAGATION_ROUNDS):
                name = f"p{existing}-{i}.bench"
                start = time.perf_counter()
                api_on.call("POST", "/api/v1/zones", json.dumps(api_zone(name)), 201)
                wait_for([name], 30)
                waits.append((time.perf_counter() - start) * 1000)
            waits.sort()
            p95 = waits[min(len(waits) - 1, int(len(waits) * 0.95))]
            lines.append(f"propagation, from the POST of a zone to the secondary answering for "
                         f"it, {members:,} members in the catalog already: p50 "
                         f"{statistics.median(waits):.0f} ms, p95 {p95:.0f} ms "
                         f"({PROPAGATION_ROUNDS} zones)")
    finally:
        client.close()
        on.stop()
        off.stop()
        secondary.stop()
        primary.stop()


CATCH_UP_MEMBERS = 500


def bench_catch_up(directory, lines, members=CATCH_UP_MEMBERS, rate=None):
    """The two catch-up times: a secondary started before bindcar, from bindcar ready to
    the secondary serving a zone created then; and a secondary killed, emptied (its
    zone files and NZD gone) and restarted, from its start to serving every member.
    ``rate``: the secondary's serial-query-rate (named's default is 20 a second)."""
    from test_catalog import secondary_conf
    os.mkdir(directory)
    for part in ("primary", "secondary", "zones"):
        os.mkdir(os.path.join(directory, part))
    primary = NamedServer(os.path.join(directory, "primary"), notify="explicit").start()
    options, zone = secondary_conf("catalog.catch", primary)
    if rate:
        options += f" serial-query-rate {rate};"
    setting = f"serial-query-rate {rate}" if rate else "named's defaults"
    secondary = NamedServer(os.path.join(directory, "secondary"), options, zone).start()
    client = dns_proto.DnsClient("127.0.0.1", secondary.dns_port, timeout=1)
    server = None

    def unserved(names):
        left = []
        for name in names:
            try:
                if not client.query(f"www.{name}", "A"):
                    left.append(name)
            except dns_proto.DnsError:
                client.close()
                left.append(name)
        return left

    try:
        server = Bindcar(primary, os.path.join(directory, "zones"),
                         BIND_CATALOG_ZONE="catalog.catch",
                         BIND_SECONDARIES=f"127.0.0.1:{secondary.dns_port}").start(wait=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if server.request("GET", "/ready", token=None)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        ready = time.perf_counter()
        api = Lean(server)
        api.call("POST", "/api/v1/zones", json.dumps(api_zone("first.catch")), 201)
        while unserved(["first.catch"]) and time.perf_counter() - ready < 60:
            time.sleep(0.01)
        lines.append(f"a secondary started before bindcar served a zone created at once "
                     f"{time.perf_counter() - ready:.2f} s after bindcar was ready ({setting})")
        names = [f"m{i}.catch" for i in range(members - 1)]
        for name in names:
            api.call("POST", "/api/v1/zones", json.dumps(api_zone(name)), 201)
        names.append("first.catch")
        deadline = time.monotonic() + 300
        while unserved(names) and time.monotonic() < deadline:
            time.sleep(0.2)
        secondary.stop(signal.SIGKILL)
        for entry in os.listdir(secondary.dir):
            if entry.endswith((".db", ".nzd", ".jnl")) or entry.startswith("__catz"):
                os.unlink(os.path.join(secondary.dir, entry))
        began = time.perf_counter()
        secondary.start()
        left = names
        while left and time.perf_counter() - began < 300:
            left = unserved(left)
            time.sleep(0.05)
        lines.append(f"a secondary killed, emptied and restarted served all {members} "
                     f"members again {time.perf_counter() - began:.1f} s after its start "
                     f"({setting}; {len(left)} missing)")
    finally:
        client.close()
        if server:
            server.stop()
        secondary.stop()
        primary.stop()


def bench_auth(server, lines):
    """Time to refuse a wrong token, by how much of the real one it shares: figures only."""
    token = server.env["BIND_API_TOKEN"]
    conn = server.connection()
    cases = {"no prefix shared": "x" * len(token),
             "all but the last character": token[:-1] + "x",
             "shorter": token[:8], "10x longer": token * 10}
    medians = {}
    for _ in range(3):                                   # interleaved rounds
        for name, value in cases.items():
            samples = medians.setdefault(name, [])
            for _ in range(300):
                started = time.perf_counter()
                conn.request("GET", "/api/v1/zones",
                             headers={"Authorization": f"Bearer {value}"})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 401
                samples.append((time.perf_counter() - started) * 1e6)
    conn.close()
    lines.append("401 for a wrong token, median time to answer, by what it shares with the "
                 "right one: " + "; ".join(
        f"{name} {statistics.median(samples):.1f} us" for name, samples in medians.items()))


def fill(api, start, stop):
    """Create zones fill{start}..fill{stop-1} serially through the API; seconds taken."""
    bodies = [json.dumps(api_zone(f"fill{i}.bench")) for i in range(start, stop)]
    began = time.perf_counter()
    for body in bodies:
        api.call("POST", "/api/v1/zones", body, 201)
    return time.perf_counter() - began


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def bench_memory(server, lines):
    """RSS idle, after 10,000 requests and with 200 idle connections, in two rounds."""
    api = Api(server)
    figures = [("after 10,000 zones and the benchmarks above", rss_mb(server.proc.pid))]
    for round_ in (1, 2):
        for i in range(10000):
            api.call("GET", "/api/v1/zones/fill1.bench" if i % 2 else "/health")
        figures.append((f"after 10,000 requests (round {round_})", rss_mb(server.proc.pid)))
        idle = [connect_from(ATTACKERS[i % len(ATTACKERS)], server.port)   # 40 an address
                for i in range(200)]
        time.sleep(0.5)
        started = time.perf_counter()
        api.call("GET", "/health")
        answer_ms = (time.perf_counter() - started) * 1000
        figures.append((f"with 200 idle connections (round {round_}); /health answered in "
                        f"{answer_ms:.2f} ms", rss_mb(server.proc.pid)))
        for sock in idle:
            sock.close()
        time.sleep(0.5)
    lines += [f"RSS {what}: {mb:.1f} MB" for what, mb in figures]


def bench_hostile(server, lines):
    """RSS and /health (from another address) under a header flood, and /health and a
    zone listing while one address tries to take every connection."""
    answers, rss, health = [], [], []
    threads = header_flood(server.port, answers)
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        rss.append(rss_mb(server.proc.pid))
        health.append(call_from(server, "127.0.0.2", "/health"))
    rss.append(rss_mb(server.proc.pid))
    ms = sorted(seconds * 1000 for _, seconds in health) or [0.0]
    lines.append(f"header flood (250 connections, each 99 header lines of 65,000 bytes and no "
                 f"end): RSS at most {max(rss):.1f} MB; /health from another address "
                 f"{len(health)} times, all 200: {all(st == 200 for st, _ in health)}, "
                 f"p50 {ms[len(ms) // 2]:.2f} ms, max {ms[-1]:.2f} ms")
    held, refused = keep_alive_from("127.0.0.3", server.port, 256)
    try:
        calls = [call_from(server, "127.0.0.2", path, TOKEN)
                 for path in ("/health", "/api/v1/zones") * 10]
    finally:
        for sock in held:
            sock.close()
    ms = sorted(seconds * 1000 for _, seconds in calls)
    lines.append(f"one address opening 256 keep-alive connections: {len(held)} held, "
                 f"{refused} refused; meanwhile another address's /health and authenticated "
                 f"zone list, 20 calls, all 200: {all(st == 200 for st, _ in calls)}, "
                 f"max {ms[-1]:.2f} ms")


LEAN_ROUNDS = 300              # creates and deletes timed beside their raw cost
SERIAL_CREATES = 1000
BARE_SERVER = """
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Health)
server.daemon_threads = True
server.serve_forever()
"""


def bench_zone_path(named, server, lines, rounds=LEAN_ROUNDS, serial=SERIAL_CREATES):
    """The zone path beside named's own cost, interleaved call by call in one run:
    create beside the raw fsync'd write + addzone, delete beside the raw delzone +
    unlink + directory fsync, and ``serial`` creates in a row beside the raw loop.
    bindcar is called over a bare keep-alive socket (Lean), as bindy's client costs
    next to nothing; the raw side uses a kept-open RNDC connection."""
    api, raw = Lean(server), Raw(named, server.zone_dir)
    figures = {}
    for op, (o, b) in zone_path_at(api, raw, "lean", rounds).items():
        figures[op] = o[0] / b[0]
        lines.append(f"zone {op}: bindcar p50 {o[0]:.3f} ms (p99 {o[1]:.3f}); raw p50 "
                     f"{b[0]:.3f} ms (p99 {b[1]:.3f}): {o[0] / b[0]:.2f}x named's own cost")
    ours, theirs = creates_per_second(api, raw, "serial", serial)
    for i in range(serial):
        api.call("DELETE", f"/api/v1/zones/c{i}-serial.bench")
    figures["serial"] = ours / theirs
    lines.append(f"{serial:,} serial creates: bindcar {ours:.0f}/s, raw loop "
                 f"{theirs:.0f}/s: {ours / theirs:.2f}x the raw loop's rate")
    return figures


def rss_after_health(proc, port):
    """RSS of ``proc`` once it has answered GET /health on ``port``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    time.sleep(0.2)                 # its threads settle
                    return rss_mb(proc.pid)
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("no answer to GET /health")


def bench_idle_rss(server, lines):
    """bindcar's idle RSS as deployed beside a bare ThreadingHTTPServer process started
    with the same interpreter and flags, each after answering one GET /health."""
    command = production_command()
    port = free_port()
    bare = subprocess.Popen(command[:-2] + ["-c", BARE_SERVER, str(port)])
    try:
        theirs = rss_after_health(bare, port)
    finally:
        bare.terminate()
        bare.wait(10)
    ours = rss_after_health(server.proc, server.port)
    lines.append(f"idle RSS: bindcar {ours:.1f} MB ({' '.join(command)}); a bare "
                 f"ThreadingHTTPServer with the same flags {theirs:.1f} MB: "
                 f"{ours / theirs:.2f}x")
    return ours / theirs


SCALE_SAMPLES = 100            # creates and deletes timed at each size


def zone_path_at(api, raw, tag, samples=SCALE_SAMPLES):
    """{"create": (ours, raw), "delete": (ours, raw)}, each a summary() of ``samples``
    calls through bindcar and raw, interleaved, at the size named has now."""
    ours, base = {"create": [], "delete": []}, {"create": [], "delete": []}

    def timed(times, fn, *args):
        start = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - start) * 1000)

    bodies = [json.dumps(api_zone(f"s{i}-{tag}.bench")) for i in range(samples)]
    prepared = [raw.prepare(f"sraw{i}-{tag}.bench") for i in range(samples)]
    for i in range(samples):
        timed(ours["create"], api.call, "POST", "/api/v1/zones", bodies[i], 201)
        timed(base["create"], raw.create_prepared, prepared[i])
    for i in range(samples):
        timed(ours["delete"], api.call, "DELETE", f"/api/v1/zones/s{i}-{tag}.bench")
        timed(base["delete"], raw.delete, f"sraw{i}-{tag}.bench")
    return {op: (summary(ours[op]), summary(base[op])) for op in ours}


def creates_per_second(api, raw, tag, count):
    """(bindcar, raw): ``count`` creates in a row each, at the size named has now; the
    raw zones go again, bindcar's (c<i>-<tag>.bench) stay."""
    bodies = [json.dumps(api_zone(f"c{i}-{tag}.bench")) for i in range(count)]
    prepared = [raw.prepare(f"craw{i}-{tag}.bench") for i in range(count)]
    rates = []
    for run in ((lambda: [api.call("POST", "/api/v1/zones", b, 201) for b in bodies]),
                (lambda: [raw.create_prepared(p) for p in prepared])):
        began = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - began))
    for i in range(count):
        raw.delete(f"craw{i}-{tag}.bench")
    return rates


def wait_for(server, path, deadline):
    while time.monotonic() < deadline:
        try:
            if server.request("GET", path)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.005)
    return False


def scale(total):
    """The zone path at ``total`` zones (make bench-scale): one bindcar on one named."""
    lines = []
    with tempfile.TemporaryDirectory() as d:
        named, zone_dir, server = named_and_bindcar(d, lines)
        api, raw = Lean(server), Raw(named, zone_dir)
        try:
            fill(api, 0, 100)
            small = zone_path_at(api, raw, "small")
            done = 100
            for mark in sorted({min(20000, total), total}):
                last = min(1000, mark - done)             # the rates over the last 1,000
                fill(api, done, mark - last)
                ours, theirs = creates_per_second(api, raw, str(mark), last)
                done = mark
                lines.append(f"creates at {mark:,} zones: bindcar {ours:.0f}/s, raw loop "
                             f"{theirs:.0f}/s at the same size: {ours / theirs:.2f}x")
            big = zone_path_at(api, raw, "big")
            for op in ("create", "delete"):
                ((o1, _, _), (r1, _, _)), ((o2, _, _), (r2, _, _)) = small[op], big[op]
                lines.append(f"{op} p50: at 100 zones bindcar {o1:.3f} ms (raw {r1:.3f}); at "
                             f"{total:,} bindcar {o2:.3f} ms (raw {r2:.3f}): {o2 / o1:.2f}x "
                             "the time at 100")
            listing = summary(measure(lambda i: api.call("GET", "/api/v1/zones"), 10))
            lines.append(f"GET /api/v1/zones, {total:,} zones: p50 {listing[0]:.0f} ms; RSS "
                         f"bindcar {rss_mb(server.proc.pid):.1f} MB, named "
                         f"{rss_mb(named.proc.pid):.0f} MB")
            server.stop()
            server = Bindcar(named, zone_dir)
            server.command, server.popen = production_command(), {"cwd": ROOT}
            began = time.monotonic()
            server.start(wait=False)
            health = wait_for(server, "/health", began + 60) and time.monotonic() - began
            ready = wait_for(server, "/ready", began + 60) and time.monotonic() - began
            listed = server.request("GET", "/api/v1/zones")[1]["count"]
            lines.append(f"restart at {total:,} zones: /health after {health:.2f} s, /ready "
                         f"after {ready:.2f} s, {listed:,} zones listed")
            deadline = time.monotonic() + 1200
            while time.monotonic() < deadline and not any(
                    r["message"] == "zones checked against named" for r in server.log_records()):
                time.sleep(0.5)
            checked = [r for r in server.log_records()
                       if r["message"] == "zones checked against named"]
            if checked:
                lines.append(f"the start's check of {checked[0]['listed']:,} zones against "
                             f"named, in the background: {checked[0]['seconds']:.1f} s")
            else:
                lines.append("the start's check of the zones against named had not ended "
                             f"{time.monotonic() - began:.0f} s after the start")
        finally:
            server.stop()
            named.stop()
    print(machine())
    print("\n".join(lines))


def production_command():
    """The unit's and the image's command line (run in ROOT, compiled first)."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run([python, "-m", "compileall", "-q", *(os.path.join(ROOT, m) for m in
                    ("bindcar.py", "rndc_proto.py", "zonefile.py", "dns_proto.py"))],
                   check=True)
    return [python, "-E", "-s", "-B", "-m", "bindcar"]


def machine():
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{subprocess.run(['named', '-v'], capture_output=True, text=True).stdout.strip()}")


def start_bindcar(named, zone_dir, lines):
    """bindcar as the unit runs it; the time from its start to /ready in ``lines``."""
    server = Bindcar(named, zone_dir)
    server.command = production_command()
    server.popen = {"cwd": ROOT}
    began = time.perf_counter()
    server.start(wait=False)
    wait_for(server, "/ready", time.monotonic() + 60)
    lines.append(f"start to ready: {(time.perf_counter() - began) * 1000:.0f} ms "
                 f"({' '.join(server.command)}); RSS idle after start: "
                 f"{rss_mb(server.proc.pid):.1f} MB")
    return server


def named_and_bindcar(directory, lines):
    """A private named, and bindcar beside it with its zone directory in ``directory``."""
    named = NamedServer(directory).start()
    zone_dir = os.path.join(directory, "zones")
    os.mkdir(zone_dir)
    return named, zone_dir, start_bindcar(named, zone_dir, lines)


def main():
    rows = []
    bench_zonefile(rows)
    lines = []
    with tempfile.TemporaryDirectory() as d:
        named, zone_dir, server = named_and_bindcar(d, lines)
        try:
            rss = bench_idle_rss(server, lines)
            ratios = bench_zone_path(named, server, lines)
            bench_rndc(named, rows)
            bench_dns(named, rows, lines)
            bench_health(server, lines)
            bench_records(named, server, rows, lines)
            bench_webhook(named, d, lines)
            bench_conditional(server, lines)
            bench_catalog(os.path.join(d, "catalog"), rows, lines)
            bench_catch_up(os.path.join(d, "catch-up"), lines)
            bench_catch_up(os.path.join(d, "catch-up-100"), lines, rate=100)
            bench_operations(named, server, rows, 0, API_ROUNDS)
            seconds = fill(Api(server), 0, 1000)
            bench_operations(named, server, rows, 1000, API_ROUNDS)
            seconds += fill(Api(server), 1000, 10000)
            lines.append(f"10,000 zones created serially through the API: {seconds:.1f} s")
            bench_operations(named, server, rows, 10000, API_ROUNDS)
            api = Api(server)
            listing = summary(measure(lambda i: api.call("GET", "/api/v1/zones"), 20))
            rows.append(("API list 10,000 zones", listing, None, None))
            page = summary(measure(lambda i: api.call(
                "GET", f"/api/v1/zones?limit=100&after=fill{i * 37 % 9000}.bench"), 200))
            rows.append(("API page of 100 of 10,000 zones", page, None, None))
            bench_auth(server, lines)
            bench_memory(server, lines)
            bench_hostile(server, lines)
        finally:
            server.stop()
            named.stop()
    print(machine())
    print(f"{'operation':<34} {'ours p50':>10} {'ours p99':>10} {'n':>6}   "
          f"{'baseline p50':>12} {'p99':>8} {'n':>5}  {'speed-up':>8}")
    for name, (p50, p99, n), baseline, ratio in rows:
        line = f"{name:<34} {p50:>8.3f}ms {p99:>8.3f}ms {n:>6}"
        if baseline:
            b50, b99, bn = baseline
            line += f"   {b50:>10.3f}ms {b99:>6.2f}ms {bn:>5}  {ratio:>7.2f}x"
        print(line)
    print("rndc rows: ours is RndcClient on one kept-open connection, the baseline a new ISC "
          "`rndc` process each time.\nAPI rows: ours is bindcar over one keep-alive HTTP "
          "connection, the baseline the raw cost (fsync'd file write and RNDC on a kept-open "
          "connection); the last column is ours/raw.")
    print()
    print("\n".join(lines))
    print(f"\nthe zone path: create {ratios['create']:.2f}x and delete {ratios['delete']:.2f}x "
          f"named's own cost (p50), serial creates at {ratios['serial']:.2f}x the raw loop's "
          f"rate, idle RSS {rss:.2f}x a bare ThreadingHTTPServer")


def alone(run):
    """One part of the bench on its own, ``run(directory, lines)``: its lines printed
    after the machine's."""
    found = []
    with tempfile.TemporaryDirectory() as d:
        run(d, found)
    print(machine())
    print("\n".join(found))


def conditional_alone(d, found):
    named, _, server = named_and_bindcar(d, found)
    try:
        bench_conditional(server, found)
    finally:
        server.stop()
        named.stop()


def webhook_alone(d, found):
    named = NamedServer(d).start()
    try:
        bench_webhook(named, d, found)
    finally:
        named.stop()


def catch_up_alone(d, found):
    bench_catch_up(os.path.join(d, "catch-up"), found)
    bench_catch_up(os.path.join(d, "catch-up-100"), found, rate=100)


PARTS = {"--conditional": conditional_alone, "--webhook": webhook_alone,
         "--catch-up": catch_up_alone}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--scale"]:
        scale(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
    elif sys.argv[1:2] and sys.argv[1] in PARTS:
        alone(PARTS[sys.argv[1]])
    else:
        main()
