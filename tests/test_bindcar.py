"""bindcar as a real process over real HTTP, against real named."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import bindcar as bindcar_module
import zonefile
from conftest import BINDCAR, TOKEN, free_port
from test_zonefile import HOSTILE, body as hostile_body


CLOSED = free_port()           # nothing listens here: named's transfers from it fail at once


def zone_body(name, zone_type="primary", key=None, **config):
    """A create body for ``name`` with an in-zone name server and one record."""
    if zone_type == "secondary":
        zone_config = {"primaries": [f"127.0.0.1 port {CLOSED}"]}
    else:
        zone_config = {"ttl": 300,
                       "soa": {"primaryNs": f"ns1.{name}.", "adminEmail": f"admin@{name}",
                               "serial": 2025010101},
                       "nameServers": [f"ns1.{name}."],
                       "nameServerIps": {f"ns1.{name}.": "127.0.0.1"},
                       "records": [{"name": "www", "type": "A", "value": "192.0.2.10"},
                                   {"name": "@", "type": "TXT", "value": "hello"}]}
    zone_config.update(config)
    result = {"zoneName": name, "zoneType": zone_type, "zoneConfig": zone_config}
    if key:
        result["updateKeyName"] = key
    return result


def files_of(zone_dir):
    return sorted(f for f in os.listdir(zone_dir) if f != bindcar_module.LOCK_FILE)


def raw(server, data, read=65536):
    """Send raw bytes; return what the server answers before closing or 5 s."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(read)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
    return b"".join(chunks)


def status_and_json(response):
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head.decode("latin-1")


def nsupdate(named, zone, line):
    script = (f"server 127.0.0.1 {named.dns_port}\nzone {zone}\n{line}\nsend\n")
    return subprocess.run(["nsupdate", "-y", f"hmac-sha256:update-key:"
                           f"{named.secrets['hmac-sha256']}"], input=script, text=True,
                          capture_output=True, timeout=30)


# ------------------------------------------------------------------ zones end to end

def test_health_and_ready_are_open(bindcar):
    for path in ("/health", "/api/v1/health"):
        assert bindcar.request("GET", path, token=None)[:2] == (
            200, {"status": "healthy", "version": bindcar_module.VERSION})
    for path in ("/ready", "/api/v1/ready"):
        status, body, _ = bindcar.request("GET", path, token=None)
        assert status == 200 and body["ready"] is True
        assert "rndc: named answers" in body["checks"]


def test_created_zone_is_served_by_named_and_delete_removes_it(bindcar, named, unique):
    zone = f"{unique}.example"
    status, body, _ = bindcar.request("POST", "/api/v1/zones", zone_body(zone))
    assert (status, body) == (201, {"success": True, "details": None,
                                    "message": f"Zone {zone} created successfully"})
    assert named.dig(f"www.{zone}") == ("NOERROR", [f"www.{zone}.\t300\tIN\tA\t192.0.2.10"])
    assert named.dig(zone, "TXT")[1] == [f'{zone}.\t300\tIN\tTXT\t"hello"']
    path = os.path.join(bindcar.zone_dir, f"{zone}.zone")
    assert os.stat(path).st_mode & 0o777 == 0o644
    status, body, _ = bindcar.request("GET", "/api/v1/zones")
    assert status == 200 and zone in body["zones"] and body["count"] == len(body["zones"])
    assert bindcar.request("GET", f"/api/v1/zones/{zone}")[:2] == (200, {
        "name": zone, "zoneType": "primary", "serial": 2025010101, "filePath": path})
    status, body, _ = bindcar.request("GET", f"/api/v1/zones/{zone}/status")
    assert status == 200 and body["message"] == f"Zone {zone} status retrieved"
    assert f"name: {zone}" in body["details"]
    status, body, _ = bindcar.request("DELETE", f"/api/v1/zones/{zone}")
    assert (status, body["message"]) == (200, f"Zone {zone} deleted successfully")
    assert named.dig(f"www.{zone}") == ("REFUSED", [])
    assert not [f for f in files_of(bindcar.zone_dir) if f.startswith(zone)]
    assert bindcar.request("GET", f"/api/v1/zones/{zone}")[0] == 404
    assert zone not in bindcar.request("GET", "/api/v1/zones")[1]["zones"]
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 404


def test_the_bindy_sequence(bindcar, named, unique):
    zone = f"{unique}.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    status, body, _ = bindcar.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))
    assert (status, body["error"]) == (409, f"Zone {zone} already exists")
    status, body, _ = bindcar.request("PATCH", f"/api/v1/zones/{zone}",
                                      {"alsoNotify": ["127.0.0.2", "127.0.0.3 port 5353"],
                                       "allowTransfer": ["127.0.0.4"]})
    assert (status, body["message"]) == (200, f"Zone {zone} modified successfully")
    shown = named.client().call(f"showzone {zone}")
    assert "also-notify { 127.0.0.2; 127.0.0.3 port 5353; }" in shown
    assert "127.0.0.4/32" in shown and 'allow-update { key "update-key"; }' in shown
    assert f'file "{bindcar.zone_dir}/{zone}.zone"' in shown
    assert bindcar.request("GET", f"/api/v1/zones/{zone}/status")[0] == 200
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert bindcar.request("GET", f"/api/v1/zones/{zone}/status")[0] == 404


def test_duplicate_create_keeps_live_file_and_journal(bindcar, named, unique):
    zone = f"{unique}.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    done = nsupdate(named, zone, f"update add new.{zone} 300 A 192.0.2.99")
    assert done.returncode == 0, done.stderr
    base = os.path.join(bindcar.zone_dir, f"{zone}.zone")
    before = {p: open(p, "rb").read() for p in (base, base + ".jnl")}
    other = zone_body(zone, records=[{"name": "www", "type": "A", "value": "198.51.100.1"}])
    assert bindcar.request("POST", "/api/v1/zones", other)[0] == 409
    assert {p: open(p, "rb").read() for p in before} == before
    assert named.dig(f"new.{zone}")[1] == [f"new.{zone}.\t300\tIN\tA\t192.0.2.99"]
    assert named.dig(f"www.{zone}")[1] == [f"www.{zone}.\t300\tIN\tA\t192.0.2.10"]
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert not os.path.exists(base + ".jnl")


def test_zone_actions_and_named_refusals(bindcar, unique):
    static, dynamic = f"{unique}-s.example", f"{unique}-d.example"
    bindcar.request("POST", "/api/v1/zones", zone_body(static))
    bindcar.request("POST", "/api/v1/zones", zone_body(dynamic, key="update-key"))
    cases = [
        ("reload", static, 200, f"Zone {static} reloaded successfully"),
        ("freeze", static, 409, f"named refused to freeze zone {static}: not dynamic"),
        ("notify", static, 200, f"Notify sent for zone {static}"),
        ("retransfer", static, 409, f"named refused to retransfer zone {static}: failure"),
        ("reload", dynamic, 409, f"Zone {dynamic} takes dynamic updates, so named will not "
         "reload it from its file: freeze it (POST .../freeze), edit the file, then thaw it "
         "(POST .../thaw), which loads the edit"),
        ("freeze", dynamic, 200, f"Zone {dynamic} frozen successfully"),
        ("reload", dynamic, 200, f"Zone {dynamic} reloaded successfully"),
        ("thaw", dynamic, 200, f"Zone {dynamic} thawed successfully"),
    ]
    for action, zone, want, message in cases:
        status, body, _ = bindcar.request("POST", f"/api/v1/zones/{zone}/{action}")
        assert (status, body.get("message") or body.get("error")) == (want, message), action
    for action in ("reload", "freeze", "thaw", "notify", "retransfer"):
        status, body, _ = bindcar.request("POST", f"/api/v1/zones/nosuch-{unique}.example/{action}")
        assert (status, body["error"]) == (404, f"Zone nosuch-{unique}.example not found")
    assert bindcar.request("GET", f"/api/v1/zones/nosuch-{unique}.example/status")[0] == 404
    for zone in (static, dynamic):
        assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


def test_secondary_zone(bindcar, named, unique):
    zone = f"{unique}.example"
    body = zone_body(zone, "secondary",
                     primaries=[f"127.0.0.2 port {CLOSED}", f"127.0.0.3:{CLOSED}"])
    assert bindcar.request("POST", "/api/v1/zones", body)[0] == 201
    assert bindcar.request("POST", "/api/v1/zones", body)[0] == 409     # not loaded is there
    status, info, _ = bindcar.request("GET", f"/api/v1/zones/{zone}")
    assert (status, info["zoneType"], "serial" in info) == (200, "secondary", False)
    assert info["filePath"] == os.path.join(bindcar.zone_dir, f"{zone}.zone")
    assert bindcar.request("POST", f"/api/v1/zones/{zone}/retransfer")[:2] == (
        200, {"success": True, "message": f"Retransfer initiated for zone {zone}",
              "details": None})
    status, body, _ = bindcar.request("POST", f"/api/v1/zones/{zone}/freeze")
    assert (status, body["error"]) == (409, f"named refused to freeze zone {zone}: not primary")
    assert f"primaries {{ 127.0.0.2 port {CLOSED}; 127.0.0.3 port {CLOSED}; }}" in named.client().call(
        f"showzone {zone}")
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


def test_server_status_and_reload(bindcar):
    status, body, _ = bindcar.request("GET", "/api/v1/server/status")
    assert status == 200 and "server is up and running" in body["status"]
    status, body, _ = bindcar.request("POST", "/api/v1/server/reload")
    assert (status, body["message"], body["details"]) == (
        200, "Server reloaded successfully", "server reload successful")


def test_list_is_sorted(bindcar, unique):
    names = [f"{unique}-{c}.example" for c in "cab"]
    for name in names:
        assert bindcar.request("POST", "/api/v1/zones", zone_body(name))[0] == 201
    listed = bindcar.request("GET", "/api/v1/zones")[1]["zones"]
    assert listed == sorted(listed) and set(names) <= set(listed)
    for name in names:
        bindcar.request("DELETE", f"/api/v1/zones/{name}")


def test_names_in_paths_are_validated_and_normalised(bindcar, named):
    for path in ("a%2Fb", "..", "%22%3B", "a%0Ab", "a..b", "x" * 64, "%2E%2E%2Fetc"):
        status, body, _ = bindcar.request("GET", f"/api/v1/zones/{path}")
        assert (status, body["field"]) == (400, "name"), path
    status, body, _ = bindcar.request("GET", "/api/v1/zones/STATIC.test.")
    assert (status, body["name"], body["zoneType"]) == (200, "static.test", "primary")
    assert named.alive()


def test_patch_keeps_primaries_and_dnssec_policy(bindcar, named, unique):
    secondary, signed = f"{unique}-sec.example", f"{unique}-sig.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(secondary, "secondary"))[0] == 201
    assert bindcar.request("POST", "/api/v1/zones", zone_body(
        signed, key="update-key", dnssecPolicy="default", inlineSigning=True))[0] == 201
    for zone in (secondary, signed):
        status, _, _ = bindcar.request("PATCH", f"/api/v1/zones/{zone}",
                                       {"allowTransfer": ["127.0.0.7"], "alsoNotify": []})
        assert status == 200
    shown = named.client().call(f"showzone {secondary}")
    assert f"primaries {{ 127.0.0.1 port {CLOSED}; }}" in shown and "127.0.0.7/32" in shown
    assert f'file "{bindcar.zone_dir}/{secondary}.zone"' in shown
    shown = named.client().call(f"showzone {signed}")
    for kept in ('dnssec-policy "default"', "inline-signing yes", 'key "update-key"',
                 f'file "{bindcar.zone_dir}/{signed}.zone"', "127.0.0.7/32"):
        assert kept in shown
    for zone in (secondary, signed):
        assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert not [f for f in files_of(bindcar.zone_dir) if unique in f]


def test_zones_bindcar_does_not_manage_are_left_alone(bindcar, named):
    status, body, _ = bindcar.request("DELETE", "/api/v1/zones/static.test")
    assert status == 409 and "not managed by bindcar" in body["error"]
    status, body, _ = bindcar.request("PATCH", "/api/v1/zones/static.test",
                                      {"allowTransfer": ["127.0.0.5"]})
    assert status == 409
    assert named.dig("www.static.test")[0] == "NOERROR"


def test_patch_errors(bindcar, unique):
    zone = f"{unique}.example"
    assert bindcar.request("PATCH", f"/api/v1/zones/{zone}", {"alsoNotify": []})[0] == 404
    bindcar.request("POST", "/api/v1/zones", zone_body(zone))
    cases = [({}, 400, "body"), ({"alsoNotify": ["1.2.3.4; }; "]}, 400, "alsoNotify[0]"),
             ({"allowUpdate": ["fe80::1%eth0"]}, 400, "allowUpdate[0]"),
             ({"allowTransfer": "any"}, 400, "allowTransfer"), ([], 400, "body")]
    for patch, want, field in cases:
        status, body, _ = bindcar.request("PATCH", f"/api/v1/zones/{zone}", patch)
        assert (status, body.get("field")) == (want, field), patch
    status, body, _ = bindcar.request("PATCH", f"/api/v1/zones/{zone}", "{}",
                                      headers={"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = bindcar.request("PATCH", f"/api/v1/zones/{zone}",
                                   {"allowUpdate": ["127.0.0.1"]})
    assert status == 200
    bindcar.request("DELETE", f"/api/v1/zones/{zone}")


def test_addzone_refused_by_named_is_a_400_and_leaves_nothing(bindcar, unique):
    zone = f"{unique}.example"
    status, body, _ = bindcar.request("POST", "/api/v1/zones",
                                      zone_body(zone, dnssecPolicy="no-such-policy"))
    assert status == 400 and body["field"] == "dnssecPolicy"
    assert body["error"].startswith("named has no dnssec-policy 'no-such-policy': its own are "
                                    "default, insecure and none")
    assert not [f for f in files_of(bindcar.zone_dir) if f.startswith(zone)]
    assert bindcar.request("GET", f"/api/v1/zones/{zone}")[0] == 404


@pytest.mark.parametrize("changes, field", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_create_is_refused_and_writes_nothing(bindcar, named, changes, field):
    before = files_of(bindcar.zone_dir)
    status, body, _ = bindcar.request("POST", "/api/v1/zones", hostile_body(changes))
    assert (status, body["field"]) == (400, field)
    assert body["error"].startswith(field + ": ")
    assert files_of(bindcar.zone_dir) == before


def test_named_is_healthy_after_hostile_input(bindcar, named):
    assert "server is up and running" in named.client().call("status")
    assert bindcar.request("GET", "/ready")[0] == 200


def test_twenty_concurrent_creates_of_one_zone(bindcar, unique):
    zone = f"{unique}.example"
    results, start = [], threading.Event()

    def create():
        start.wait(10)
        results.append(bindcar.request("POST", "/api/v1/zones", zone_body(zone))[0])

    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(60)
    assert sorted(results) == [201] + [409] * 19
    text = open(os.path.join(bindcar.zone_dir, f"{zone}.zone")).read()
    assert text == zonefile.render_zone_file(zonefile.parse_zone(zone_body(zone)))
    assert not [f for f in files_of(bindcar.zone_dir) if f.startswith(".")]
    bindcar.request("DELETE", f"/api/v1/zones/{zone}")


# ------------------------------------------------------------------ HTTP

def test_keep_alive_serves_many_requests_on_one_connection(bindcar):
    conn = bindcar.connection()
    conn.connect()
    sock = conn.sock
    for _ in range(5):
        assert bindcar.request("GET", "/api/v1/zones", conn=conn)[0] == 200
    assert conn.sock is sock
    conn.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    (b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
    (b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n", 413),
    (b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n", 411),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
])
def test_protocol_errors_are_json(bindcar, request_bytes, status):
    got, body, _ = status_and_json(raw(bindcar, request_bytes))
    assert got == status and isinstance(body["error"], str) and body["details"] is None


def test_body_errors(bindcar):
    cases = [("{", "application/json", 400), ('{"zoneName": NaN}', "application/json", 400),
             ("[" * 100000, "application/json", 400), (b"\xff\xfe{", "application/json", 400),
             ("{}", "text/plain", 415), ("{}", None, 415)]
    for data, ctype, want in cases:
        headers = {"Content-Type": ctype} if ctype else {}
        status, body, _ = bindcar.request("POST", "/api/v1/zones", data, headers=headers)
        assert status == want and "error" in body, (data[:10], ctype)


def test_unknown_routes_and_methods(bindcar):
    status, body, _ = bindcar.request("GET", "/api/v1/nothing")
    assert (status, body) == (404, {"error": "Not found", "details": None})
    status, body, resp = bindcar.request("PUT", "/api/v1/zones", "{}")
    assert status == 405 and resp.getheader("Allow") == "GET, POST"
    conn = bindcar.connection()
    conn.request("HEAD", "/health")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.read() == b""
    conn.request("GET", "/health")                      # the connection is still in step
    assert conn.getresponse().status == 200
    conn.close()


# ------------------------------------------------------------------ auth

@pytest.mark.parametrize("header, message", [
    (None, "Missing Authorization header"),
    ("Basic dXNlcjpwYXNz", "Invalid Authorization header format. Expected: Bearer <token>"),
    (f"bearer {TOKEN}", "Invalid Authorization header format. Expected: Bearer <token>"),
    ("Bearer ", "Empty token"),
    ("Bearer wrong", "Unauthorized"),
    (f"Bearer {TOKEN}x", "Unauthorized"),
    (f"Bearer {TOKEN[:-1]}", "Unauthorized"),
])
def test_token_auth_refuses(bindcar, header, message):
    headers = {"Authorization": header} if header is not None else {}
    status, body, _ = bindcar.request("GET", "/api/v1/zones", token=None, headers=headers)
    assert (status, body) == (401, {"error": message, "details": None})


def test_auth_disabled(make_bindcar, named):
    server = make_bindcar(named, DISABLE_AUTH="true", BIND_API_TOKEN=None)
    assert server.request("GET", "/api/v1/zones", token=None)[0] == 200
    assert "auth: DISABLED (DISABLE_AUTH=true)" in server.request("GET", "/ready")[1]["checks"]
    assert any(r["level"] == "warn" and "DISABLED" in r["message"] for r in server.log_records())


def test_format_only_auth_on_loopback_accepts_any_bearer(make_bindcar, named):
    server = make_bindcar(named, BIND_API_TOKEN=None)
    assert server.request("GET", "/api/v1/zones", token="anything")[0] == 200
    assert server.request("GET", "/api/v1/zones", token=None)[0] == 401


def test_format_only_auth_off_loopback_is_refused_at_start(make_bindcar, named):
    server = make_bindcar(named, start=False, BIND_API_TOKEN=None, BIND_API_ADDRESS="0.0.0.0")
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    text = server.log_text()
    assert text.startswith("bindcar: no authentication configured") and text.count("\n") == 1
    server = make_bindcar(named, BIND_API_TOKEN=None, BIND_API_ADDRESS="0.0.0.0",
                          BINDCAR_ALLOW_INSECURE_AUTH="true")
    assert server.request("GET", "/api/v1/zones", token="x")[0] == 200


def test_token_from_file_and_rndc_key_from_rndc_conf(make_bindcar, named, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    server = make_bindcar(named, BIND_API_TOKEN=None, BIND_API_TOKEN_FILE=str(token_file),
                          RNDC_SECRET=None, RNDC_SERVER=None, RNDC_CONF=named.rndc_conf)
    assert server.request("GET", "/api/v1/server/status", token="from-a-file")[0] == 200
    assert server.request("GET", "/api/v1/server/status")[0] == 401


# ------------------------------------------------------------------ start-up

@pytest.mark.parametrize("env, words", [
    ({"API_PORT": "http"}, "API_PORT='http'"),
    ({"API_PORT": "70000"}, "API_PORT='70000'"),
    ({"RNDC_TIMEOUT": "-1"}, "RNDC_TIMEOUT"),
    ({"DISABLE_AUTH": "maybe"}, "DISABLE_AUTH"),
    ({"RNDC_ALGORITHM": "sha3"}, "RNDC_ALGORITHM"),
    ({"RNDC_SECRET": "not base64!"}, "RNDC_SECRET: the rndc secret is not valid base64"),
    ({"RNDC_SECRET": None, "RNDC_CONF": "/nonexistent/rndc.conf"}, "RNDC_CONF"),
    ({"BIND_API_TOKEN": None, "BIND_API_TOKEN_FILE": "/nonexistent"}, "BIND_API_TOKEN_FILE"),
    ({"BIND_ZONE_DIR": "/nonexistent"}, "BIND_ZONE_DIR: /nonexistent does not exist"),
    ({"BIND_ZONE_DIR": "/etc/hostname"}, "BIND_ZONE_DIR: /etc/hostname is not a directory"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ({"RNDC_SERVER": "127.0.0.1:x"}, "RNDC_SERVER"),
    ({"RNDC_SERVER": "127.0.0.1:"}, "RNDC_SERVER='127.0.0.1:': has a ':' but no port"),
    ({"API_PORT": "eighty"}, "API_PORT='eighty': must be a port number, 1-65535"),
    ({"RNDC_TIMEOUT": "nan"}, "RNDC_TIMEOUT='nan': must be a number of seconds"),
    ({"RATE_LIMIT_BURST": "many"}, "RATE_LIMIT_BURST='many': must be a whole number"),
])
def test_bad_setting_stops_at_once_with_one_line(make_bindcar, named, env, words):
    server = make_bindcar(named, start=False, **env)
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    text = server.log_text()
    assert text.startswith("bindcar: ") and words in text and text.count("\n") == 1, text
    assert "Traceback" not in text and named.secrets["hmac-sha256"] not in text


def test_unopenable_lock_file_is_named_not_taken_for_a_port(make_bindcar, named, tmp_path):
    (tmp_path / bindcar_module.LOCK_FILE).mkdir()              # cannot be opened as a file
    server = make_bindcar(named, start=False, zone_dir=str(tmp_path))
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    text = server.log_text()
    assert text.startswith("bindcar: BIND_ZONE_DIR: cannot open the lock file")
    assert "listen" not in text and text.count("\n") == 1


def test_port_in_use_is_one_clear_line(make_bindcar, named):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        server = make_bindcar(named, start=False, API_PORT=str(taken.getsockname()[1]))
        server.start(wait=False)
        assert server.proc.wait(20) == 2
    text = server.log_text()
    assert text.startswith(f"bindcar: cannot listen on 127.0.0.1:{server.env['API_PORT']}")
    assert text.count("\n") == 1


def test_world_readable_rndc_key_is_a_json_warning(make_bindcar, named, tmp_path):
    key = tmp_path / "rndc.key"
    key.write_text(f'key "k" {{ algorithm hmac-sha256; '
                   f'secret "{named.secrets["hmac-sha256"]}"; }};\n')
    os.chmod(key, 0o644)
    server = make_bindcar(named, RNDC_SECRET=None, RNDC_CONF=str(key))
    warning = [r for r in server.log_records() if "readable by every user" in r["message"]]
    assert warning and warning[0]["level"] == "warn"
    assert all(line.startswith("{") for line in server.log_text().splitlines())
    assert named.secrets["hmac-sha256"] not in server.log_text()


def test_a_warning_found_before_a_bad_setting_is_still_logged(make_bindcar, named, tmp_path):
    key = tmp_path / "rndc.key"
    key.write_text(f'key "k" {{ algorithm hmac-sha256; '
                   f'secret "{named.secrets["hmac-sha256"]}"; }};\n')
    os.chmod(key, 0o644)
    server = make_bindcar(named, start=False, RNDC_SECRET=None, RNDC_CONF=str(key),
                          BIND_API_TOKEN=None, BIND_API_TOKEN_FILE=str(tmp_path / "missing"))
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    *lines, error = server.log_text().splitlines()
    assert any("readable by every user" in json.loads(line)["message"] for line in lines)
    assert error.startswith("bindcar: BIND_API_TOKEN_FILE")


def test_help_lists_every_setting():
    out = subprocess.run([sys.executable, BINDCAR, "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    for name, *_ in bindcar_module.SETTINGS:
        assert name in out


def test_second_bindcar_on_one_zone_dir_is_refused(make_bindcar, named):
    first = make_bindcar(named)
    second = make_bindcar(named, start=False, zone_dir=first.zone_dir)
    second.start(wait=False)
    assert second.proc.wait(20) == 2
    assert f"another bindcar (PID {first.proc.pid}) is using" in second.log_text()
    assert first.request("GET", "/health")[0] == 200


def test_start_clears_temp_files_and_the_files_of_a_zone_named_does_not_serve(
        make_bindcar, named, tmp_path, unique):
    """A create or delete cut short leaves bindcar's file (and a journal) of a zone named
    does not serve: the start's check removes them, and only them."""
    zone_dir = str(tmp_path / "zones")
    os.mkdir(zone_dir)
    zone = f"{unique}.example"
    open(os.path.join(zone_dir, f".bindcar-{zone}.zone.1234.tmp"), "w").write("partial")
    open(os.path.join(zone_dir, f"{zone}.zone"), "w").write(
        f"{zonefile.MARKER}{zone}\nleft by a crash\n")
    open(os.path.join(zone_dir, f"{zone}.zone.jnl"), "w").write("stale journal")
    open(os.path.join(zone_dir, f"other-{zone}.zone"), "w").write("not bindcar's\n")
    server = make_bindcar(named, zone_dir=zone_dir)
    deadline = time.monotonic() + 10             # named is asked about it after the start
    while not any(r.get("zone") == zone for r in server.log_records()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    warning = [r for r in server.log_records() if r.get("zone") == zone][0]
    assert warning["level"] == "warn" and "does not serve" in warning["message"]
    assert files_of(zone_dir) == [f"other-{zone}.zone"]
    assert server.request("GET", "/api/v1/zones")[1]["zones"] == []
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert server.request("GET", "/api/v1/zones")[1]["zones"] == [zone]
    assert named.dig(f"www.{zone}")[0] == "NOERROR"
    messages = [r["message"] for r in server.log_records()]
    assert "removed a temporary file left by an earlier crash" in messages
    server.request("DELETE", f"/api/v1/zones/{zone}")


def rndc_count(server, command):
    text = server.request("GET", "/metrics", token=None)[1]
    line = f'bindcar_rndc_commands_total{{command="{command}",result="success"}} '
    return sum(int(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def test_a_zone_checked_or_made_by_bindcar_is_not_asked_about_before_its_delete(
        make_bindcar, named, unique, tmp_path):
    """Once the start's check is done, a listed zone is bindcar's by named's word or by its
    own making: before its delete named is asked only whether it answers (null), not
    about the zone (zonestatus costs named more the more zones it holds).  A zone the
    check left out (named.conf's) is still asked about, and refused."""
    zone_dir = str(tmp_path / "zones")
    os.mkdir(zone_dir)
    kept, made = f"{unique}-kept.example", f"{unique}-made.example"
    server = make_bindcar(named, zone_dir=zone_dir)
    assert server.request("POST", "/api/v1/zones", zone_body(kept))[0] == 201
    server.stop()
    server = make_bindcar(named, zone_dir=zone_dir)
    deadline = time.monotonic() + 10
    while not any(r["message"] == "zones checked against named" for r in server.log_records()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert server.request("POST", "/api/v1/zones", zone_body(made))[0] == 201
    for zone in (kept, made):
        asked, deleted = rndc_count(server, "zonestatus"), rndc_count(server, "delzone")
        assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
        assert rndc_count(server, "zonestatus") == asked
        assert rndc_count(server, "delzone") == deleted + 1
        assert named.dig(zone, "SOA")[0] == "REFUSED"
    assert files_of(zone_dir) == []
    status, body, _ = server.request("DELETE", "/api/v1/zones/static.test")
    assert status == 409 and "not managed by bindcar" in body["error"]


def test_named_down_at_start_then_up(make_bindcar, own_named, unique):
    own_named.stop()
    server = make_bindcar(own_named, RNDC_TIMEOUT="2")
    assert server.request("GET", "/health")[0] == 200
    status, body, _ = server.request("GET", "/ready")
    assert status == 503 and body["ready"] is False
    assert "rndc: unreachable" in body["checks"]
    assert any("refused the connection" in r.get("error", "") for r in server.log_records()
               if r["message"] == "not ready: rndc")
    zone = f"{unique}.example"
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
    assert (status, body["error"]) == (503, "named is not reachable over RNDC")
    assert files_of(server.zone_dir) == []
    own_named.start()
    time.sleep(bindcar_module.READY_CACHE + 0.1)
    assert server.request("GET", "/ready")[0] == 200
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert own_named.dig(f"www.{zone}")[0] == "NOERROR"


# ------------------------------------------------------------------ logs

def test_one_access_log_line_per_request_and_no_secret(make_bindcar, named):
    server = make_bindcar(named)
    server.request("GET", "/api/v1/zones")
    server.request("GET", "/api/v1/zones", token="wrong-token-value")
    server.request("GET", "/api/v1/nothing")
    deadline = time.monotonic() + 5          # the line is written just after the response
    while True:
        records = server.log_records()
        access = [r for r in records if r["message"] == "request"]
        if len(access) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert [(r["method"], r["path"], r["status"]) for r in access[-3:]] == [
        ("GET", "/api/v1/zones", 200), ("GET", "/api/v1/zones", 401), ("GET", "unmatched", 404)]
    assert all(isinstance(r["duration_ms"], float) and r["client"] == "127.0.0.1"
               for r in access)
    start = [r for r in records if r["message"] == "starting"][0]
    assert start["rndc_secret"] == "***" and start["api_token"] == "***"
    text = server.log_text()
    assert TOKEN not in text and named.secrets["hmac-sha256"] not in text
    assert "wrong-token-value" not in text
