"""Hostile callers and shared directories: each case reproduces an attack or an accident
against real processes (named, bindcar) and checks what is left."""

import http.client
import os
import select
import shutil
import socket
import sys
import threading
import time

import pytest

import bindcar as bindcar_module
import zonefile
from conftest import BINDCAR, TOKEN
from test_bindcar import CLOSED, files_of, nsupdate, raw, status_and_json, zone_body


# ------------------------------------------------------------------ data loss

def test_create_never_removes_another_zones_file_or_journal(make_named, make_bindcar, tmp_path,
                                                            unique):
    """Debian's layout: bindcar shares the directory with named's own zones, whose file
    names need not match their zone names (named.conf's ``<u>.example`` keeps its data in
    ``<u>.zone``, with a journal of dynamic updates). A create of zone ``<u>`` must not
    take those files for leftovers."""
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    live = f"{unique}.example"
    (zone_dir / f"{unique}.zone").write_text(
        f"; an operator's comment\n$TTL 300\n@ IN SOA ns1.{live}. admin.{live}. 1 3600 600 "
        f"604800 300\n@ IN NS ns1.{live}.\nns1 IN A 127.0.0.1\n")
    named = make_named(extra_conf=f'zone "{live}" {{ type primary; '
                                  f'file "{zone_dir}/{unique}.zone"; '
                                  'allow-update { key "update-key"; }; };\n')
    assert nsupdate(named, live, f"update add new.{live} 300 A 192.0.2.7").returncode == 0
    assert (zone_dir / f"{unique}.zone.jnl").exists()
    before = {f: (zone_dir / f).read_bytes() for f in files_of(str(zone_dir))}
    server = make_bindcar(named, zone_dir=str(zone_dir))
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(unique))
    assert status == 409 and f"{unique}.zone is in the zone directory" in body["error"]
    assert "bindcar did not write it" in body["error"]
    assert {f: (zone_dir / f).read_bytes() for f in files_of(str(zone_dir))} == before
    assert named.dig(f"new.{live}")[1][0].endswith("192.0.2.7")
    assert server.request("GET", f"/api/v1/zones/{unique}")[0] == 404    # nothing added
    named.restart()                          # the update survives: file and journal intact
    assert named.dig(f"new.{live}")[1][0].endswith("192.0.2.7")


def test_a_journal_without_bindcars_file_is_not_removed(make_bindcar, named, tmp_path, unique):
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    zone = f"{unique}.example"
    (zone_dir / f"{zone}.zone.jnl").write_bytes(b"someone's journal")
    server = make_bindcar(named, zone_dir=str(zone_dir))
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
    assert status == 409 and f"{zone}.zone.jnl is in the zone directory" in body["error"]
    assert files_of(str(zone_dir)) == [f"{zone}.zone.jnl"]
    assert (zone_dir / f"{zone}.zone.jnl").read_bytes() == b"someone's journal"


def test_freeze_and_thaw_leave_zones_bindcar_does_not_manage_alone(bindcar, named):
    """named rewrites a frozen zone's file in its own format, dropping an operator's
    comments: changing operations refuse named.conf's zones, reads still work."""
    path = os.path.join(named.dir, "static.test.zone")
    before = open(path, "rb").read()
    for action in ("freeze", "thaw"):
        status, body, _ = bindcar.request("POST", f"/api/v1/zones/static.test/{action}")
        assert (status, body["error"]) == (409, "Zone static.test is not managed by bindcar "
                                                "(named.conf's, or its file is not "
                                                "static.test.zone in bindcar's zone "
                                                "directory)")
    for method, action in (("GET", "status"), ("POST", "reload"), ("POST", "notify")):
        assert bindcar.request(method, f"/api/v1/zones/static.test/{action}")[0] == 200
    assert bindcar.request("GET", "/api/v1/zones/static.test")[0] == 200
    assert open(path, "rb").read() == before
    assert named.dig("www.static.test")[0] == "NOERROR"


# ------------------------------------------------------------------ inputs that escaped validation

@pytest.mark.parametrize("request_bytes", [
    b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"0" * 5000 + b"9" * 20 + b"\r\n\r\n",
    b"GET /health HTTP/" + b"1" * 5000 + b".1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1." + b"1" * 5000 + b"\r\nHost: x\r\n\r\n",
])
def test_numbers_of_thousands_of_digits_are_a_400(bindcar, request_bytes):
    status, body, _ = status_and_json(raw(bindcar, request_bytes))
    assert status == 400 and body["error"]
    assert "Traceback" not in bindcar.log_text()[-20000:]
    assert bindcar.request("GET", "/health")[0] == 200


@pytest.mark.parametrize("record, field", [
    ({"name": "t", "type": "TXT", "value": "\ud800"}, "zoneConfig.records[0].value"),
    ({"name": "t", "type": "TXT", "value": "ok \udfff ok"}, "zoneConfig.records[0].value"),
    ({"name": "@", "type": "CAA", "value": '0 issue "\ud800"'}, "zoneConfig.records[0].value"),
    ({"name": "\ud800", "type": "A", "value": "192.0.2.1"}, "zoneConfig.records[0].name"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(bindcar, unique, record, field):
    zone = f"{unique}.example"
    body = zone_body(zone, records=[record])        # json.dumps writes it as "\ud800"
    status, answer, _ = bindcar.request("POST", "/api/v1/zones", body)
    assert (status, answer["field"]) == (400, field)
    assert not [f for f in files_of(bindcar.zone_dir) if zone in f]


def long_name(unique, length):
    """A valid zone name of exactly ``length`` characters, starting with ``unique``."""
    labels, left = [unique], length - len(unique)
    while left > 0:
        size = min(63, left - 1)
        if size < 1:                    # one character left: lengthen the first label
            labels[0] += "a"
            break
        labels.append("b" * size)
        left -= size + 1
    name = ".".join(labels)
    assert len(name) == length
    return zonefile.parse_zone_name(name)


@pytest.mark.parametrize("length", [228, 229, 240, 244, 245, 250, 253])
def test_every_valid_zone_name_creates_and_deletes_cleanly(bindcar, named, unique, length):
    zone = long_name(unique, length)
    body = {"zoneName": zone, "zoneType": "primary", "zoneConfig": {
        "ttl": 300, "soa": {"primaryNs": "ns1.example.net.", "adminEmail": "admin.example.net."},
        "nameServers": ["ns1.example.net."],
        "records": [{"name": "@", "type": "TXT", "value": "long"}]}}
    status, answer, _ = bindcar.request("POST", "/api/v1/zones", body)
    assert status == 201, answer
    assert named.dig(zone, "TXT")[1][0].endswith('"long"')
    assert zone in bindcar.request("GET", "/api/v1/zones")[1]["zones"]
    assert bindcar.request("GET", f"/api/v1/zones/{zone}")[0] == 200
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    secondary = long_name(unique[::-1], length)
    body = zone_body(secondary, "secondary", primaries=[f"127.0.0.1:{CLOSED}"])
    assert bindcar.request("POST", "/api/v1/zones", body)[0] == 201
    assert bindcar.request("DELETE", f"/api/v1/zones/{secondary}")[0] == 200
    left = [f for f in files_of(bindcar.zone_dir) if f.startswith((zone[:200], secondary[:200]))]
    assert left == []


def test_zones_are_listed_again_after_a_restart_long_names_too(make_bindcar, named, unique,
                                                               tmp_path):
    """The start reads the directory's names; a long zone's shortened file name (+hash)
    is the only one opened, for the marker that names its zone."""
    zone_dir = str(tmp_path / "zones")
    os.mkdir(zone_dir)
    zones = sorted([long_name(unique, 250), f"{unique}.example"])
    server = make_bindcar(named, zone_dir=zone_dir)
    for zone in zones:
        body = {"zoneName": zone, "zoneType": "primary", "zoneConfig": {
            "ttl": 300, "nameServers": ["ns1.example.net."],
            "soa": {"primaryNs": "ns1.example.net.", "adminEmail": "admin.example.net."}}}
        assert server.request("POST", "/api/v1/zones", body)[0] == 201
    assert any("+" in name for name in os.listdir(zone_dir))
    server.stop()
    server = make_bindcar(named, zone_dir=zone_dir)
    assert server.request("GET", "/api/v1/zones")[1]["zones"] == zones
    for zone in zones:
        assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert [f for f in os.listdir(zone_dir) if f != bindcar_module.LOCK_FILE] == []


def test_a_zone_file_name_that_leads_out_of_the_directory_is_a_409(make_bindcar, named,
                                                                   tmp_path, unique):
    zone_dir, outside = tmp_path / "zones", tmp_path / "outside.zone"
    zone_dir.mkdir()
    outside.write_text("not bindcar's")
    zone = f"{unique}.example"
    (zone_dir / f"{zone}.zone").symlink_to(outside)
    server = make_bindcar(named, zone_dir=str(zone_dir))
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
    assert status == 409 and "symbolic link that leads out of it" in body["error"]
    assert outside.read_text() == "not bindcar's" and named.dig(zone, "SOA")[0] == "REFUSED"


# ------------------------------------------------------------------ memory and connections

ATTACKERS = [f"127.0.1.{i}" for i in range(1, 6)]   # 5 addresses; the victim is 127.0.0.2


def connect_from(source, port):
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def call_from(server, source, path, token=TOKEN):
    """One request from ``source`` on a new connection: (status, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10,
                                      source_address=(source, 0))
    started = time.monotonic()
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 1024


def header_flood(port, answers, connections=250):
    """Start the attack: ``connections`` senders of 99 header lines of 65,000 bytes each,
    never the blank line, from ATTACKERS; each puts what it got back in ``answers``."""
    line = b"X-Pad: " + b"a" * 64990 + b"\r\n"

    def attack(source):
        try:
            with connect_from(source, port) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                for _ in range(99):
                    sock.sendall(line)
                answers.append(sock.recv(200))
        except OSError:
            answers.append(b"closed")

    threads = [threading.Thread(target=attack, args=(ATTACKERS[i % len(ATTACKERS)],),
                                daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    return threads


def test_a_header_flood_holds_memory_down_and_health_answers(make_bindcar, named):
    """250 connections each sending 99 header lines of 65,000 bytes and never the blank
    line took bindcar from 28 MB to 1.65 GB; the head is now capped at MAX_HEAD."""
    server = make_bindcar(named)
    answers = []
    threads = header_flood(server.port, answers)
    health = [call_from(server, "127.0.0.2", "/health") for _ in range(10)]
    for thread in threads:
        thread.join(60)
    peak = peak_rss_mb(server.proc.pid)
    print(f"header flood: peak RSS {peak:.1f} MB; /health during it "
          f"{max(s for _, s in health) * 1000:.1f} ms at most")
    assert [status for status, _ in health] == [200] * 10
    assert peak < 64
    assert len(answers) == 250 and all(a == b"closed" or a.startswith(b"HTTP/1.1 431")
                                       for a in answers)
    assert server.request("GET", "/api/v1/zones")[0] == 200


def keep_alive_from(source, port, count):
    """``count`` keep-alive connections from ``source``, each after one GET /health; the
    ones bindcar took, and how many it refused."""
    held, refused = [], 0
    for _ in range(count):
        sock = connect_from(source, port)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        if sock.recv(4096).startswith(b"HTTP/1.1 200"):
            held.append(sock)
        else:
            refused += 1
            sock.close()
    return held, refused


def test_one_address_cannot_take_every_slot(make_bindcar, named):
    server = make_bindcar(named)                       # MAX_CONNECTIONS_PER_CLIENT=64
    held, refused = keep_alive_from("127.0.0.3", server.port, 256)
    try:
        assert (len(held), refused) == (64, 192)
        assert call_from(server, "127.0.0.2", "/health")[0] == 200
        assert call_from(server, "127.0.0.2", "/api/v1/zones")[0] == 200
    finally:
        for sock in held:
            sock.close()


def test_a_full_server_makes_room_by_closing_the_longest_idle(make_bindcar, named):
    server = make_bindcar(named, MAX_CONNECTIONS_PER_CLIENT="1000")
    held, refused = keep_alive_from("127.0.0.3", server.port, bindcar_module.MAX_CONNECTIONS)
    try:
        assert (len(held), refused) == (bindcar_module.MAX_CONNECTIONS, 0)
        assert call_from(server, "127.0.0.2", "/health")[0] == 200
        assert call_from(server, "127.0.0.2", "/api/v1/zones")[0] == 200
        held[0].settimeout(5)
        assert held[0].recv(1) == b""                 # the oldest went to make room
    finally:
        for sock in held:
            sock.close()


def test_strangers_failed_logins_do_not_use_up_a_callers_requests(make_bindcar, named):
    """Behind one address (a NAT, localhost): 401s count in a bucket of their own."""
    server = make_bindcar(named, RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS="2",
                          RATE_LIMIT_PERIOD_SECS="60", RATE_LIMIT_BURST="3")
    stranger = [server.request("GET", "/api/v1/zones", token="wrong")[0] for _ in range(6)]
    assert stranger == [401, 401, 401, 429, 429, 429]
    caller = [server.request("GET", "/api/v1/zones")[0] for _ in range(4)]
    assert caller == [200, 200, 200, 429]


# ------------------------------------------------------------------ authentication

@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate is not installed")
def test_socket_activation_on_all_addresses_refuses_format_only_auth(make_bindcar, named):
    """The mode is decided from the socket bindcar inherits, not from BIND_API_ADDRESS."""
    server = make_bindcar(named, start=False, BIND_API_TOKEN=None)
    with socket.socket() as probe:              # a port free on every address, not only
        probe.bind(("0.0.0.0", 0))              # on 127.0.0.1 (free_port's check)
        server.port = probe.getsockname()[1]
    server.env["API_PORT"] = str(server.port)
    passed = [f"--setenv={k}" for k in server.env]
    server.command = ["systemd-socket-activate", "--listen", f"0.0.0.0:{server.port}",
                      *passed, sys.executable, BINDCAR]
    server.start(wait=False)
    deadline = time.monotonic() + 20
    while server.proc.poll() is None:                 # the first connection starts bindcar
        try:
            server.request("GET", "/health")
        except OSError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert server.proc.returncode == 2
    assert "\nbindcar: no authentication configured while listening on 0.0.0.0 (the socket " \
        "bindcar was given)" in server.log_text()


@pytest.mark.parametrize("env", [{"DISABLE_AUTH": "true"}, {"BIND_API_TOKEN": None}])
def test_without_real_auth_only_loopback_host_names_are_served(make_bindcar, named, env):
    """DNS rebinding: a web page whose name now points at 127.0.0.1 sends its own name."""
    server = make_bindcar(named, **env)
    for host in ("attacker.example", f"attacker.example:{server.port}", "127.0.0.1.nip.io",
                 "10.0.0.1"):
        status, body, _ = server.request("GET", "/api/v1/zones", headers={"Host": host})
        assert status == 421 and "DNS rebinding" in body["error"], host
    assert server.request("GET", "/health", headers={"Host": "evil.example"})[0] == 421
    for host in ("localhost", f"localhost:{server.port}", f"127.0.0.1:{server.port}",
                 "127.0.0.5", "[::1]:80", "LOCALHOST"):
        assert server.request("GET", "/api/v1/zones", headers={"Host": host})[0] == 200, host


def test_with_a_token_any_host_name_is_served(bindcar):
    assert bindcar.request("GET", "/api/v1/zones", headers={"Host": "bindcar.example"})[0] == 200


def test_named_conf_zones_and_their_files_are_never_bindcars(make_named, make_bindcar,
                                                             tmp_path, unique):
    """named.conf's zones whose files sit where bindcar's would (``<zone>.zone`` in its
    directory), or whose file another zone's name points at, stay the operator's."""
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    operator, data, fileless = f"{unique}-op.test", f"{unique}-data.example", unique
    for zone, file in ((operator, f"{operator}.zone"), (data, f"{unique}.zone")):
        (zone_dir / file).write_text(
            f"; the operator's\n$TTL 300\n@ IN SOA ns1.{zone}. admin.{zone}. 1 3600 600 "
            f"604800 300\n@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n")
    before = {f: (zone_dir / f).read_bytes() for f in os.listdir(zone_dir)}
    named = make_named(extra_conf=(
        f'zone "{operator}" {{ type primary; file "{zone_dir}/{operator}.zone"; }};\n'
        f'zone "{data}" {{ type primary; file "{zone_dir}/{unique}.zone"; }};\n'
        f'zone "{fileless}" {{ type secondary; primaries {{ 127.0.0.1 port {CLOSED}; }}; }};\n'))
    server = make_bindcar(named, zone_dir=str(zone_dir))
    for method, path, body in (("DELETE", "", None), ("PATCH", "", {"alsoNotify": []}),
                               ("POST", "/freeze", None), ("POST", "/thaw", None)):
        status, answer, _ = server.request(method, f"/api/v1/zones/{operator}{path}", body)
        assert status == 409 and "not managed by bindcar" in answer["error"], (method, path)
    # A file-less secondary before its transfer may go (it serves nothing), with no file:
    # <unique>.zone is the other zone's.
    assert server.request("DELETE", f"/api/v1/zones/{fileless}")[0] == 200
    assert {f: (zone_dir / f).read_bytes() for f in os.listdir(zone_dir)
            if f in before} == before
    assert named.dig(operator, "SOA")[0] == named.dig(data, "SOA")[0] == "NOERROR"
    deadline = time.monotonic() + 10             # the start-up check with named has run
    while not any("not listed" in r["message"] for r in server.log_records()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.request("GET", "/api/v1/zones")[1]["zones"] == []


def test_a_body_sent_to_a_route_that_takes_none_is_never_read(make_bindcar, named):
    """Open routes take no body: a 1 MiB one is not read (nor held), the answer comes at
    once and the connection closes."""
    server = make_bindcar(named)
    with connect_from("127.0.0.2", server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:             # closed with the body unread: also fine
            pass


def test_slow_headers_from_many_addresses_cannot_lock_others_out(make_bindcar, named):
    """Connections that send a request line and never finish their headers are closed
    after HEAD_TIMEOUT, and a full server closes the oldest of them for a newcomer."""
    server = make_bindcar(named)
    held = []
    try:
        for i in range(bindcar_module.MAX_CONNECTIONS):
            sock = connect_from(ATTACKERS[i % len(ATTACKERS)], server.port)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        assert call_from(server, "127.0.0.2", "/health")[0] == 200
        assert call_from(server, "127.0.0.2", "/api/v1/zones")[0] == 200
        closed, _, _ = select.select(held, [], [], 5)   # some went to make room
        assert closed and all(sock.recv(1) == b"" for sock in closed)
    finally:
        for sock in held:
            sock.close()


def test_without_auth_off_loopback_only_addresses_and_listed_names_are_served(make_bindcar,
                                                                              named):
    server = make_bindcar(named, DISABLE_AUTH="true", BIND_API_ADDRESS="0.0.0.0",
                          BIND_API_HOSTNAMES="dns1.example.org")
    for host, status in (("attacker.example", 421), ("dns1.example.org.attacker.example", 421),
                         ("10.1.2.3:8080", 200), ("[2001:db8::53]:8080", 200),
                         ("DNS1.example.org:8080", 200), ("localhost", 200)):
        assert server.request("GET", "/api/v1/zones", headers={"Host": host})[0] == status, host


def test_a_lock_file_hard_linked_to_a_zone_file_is_not_truncated(make_bindcar, named,
                                                                 tmp_path):
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    (zone_dir / "named-own.zone").write_text("named's data\n")
    os.link(zone_dir / "named-own.zone", zone_dir / bindcar_module.LOCK_FILE)
    server = make_bindcar(named, start=False, zone_dir=str(zone_dir))
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    assert "is not a plain file of its own" in server.log_text()
    assert (zone_dir / "named-own.zone").read_text() == "named's data\n"


def test_a_long_names_file_is_no_other_zones_file():
    """The shortened file name of a long zone cannot be another zone's ``<zone>.zone``."""
    long_zone = long_name("tcollide", 242)
    short = zonefile.zone_file_name(long_zone)
    assert short != long_zone + ".zone" and len(short) <= zonefile.MAX_FILE_NAME
    with pytest.raises(zonefile.ZoneError):
        zonefile.parse_zone_name(short[:-len(".zone")])
