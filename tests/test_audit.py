"""The audit trail (BIND_AUDIT_LOG): one line per change named accepted, written before
the answer; a trail that cannot be written stops every later change until it can."""

import json
import os

import pytest

from conftest import TOKEN
from test_bindcar import zone_body
from test_catalog import poll
from test_faults import fill, small_disk  # noqa: F401 (fixture)
from test_records import KEY, records_path


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def audited(named, make_bindcar, tmp_path):
    path = str(tmp_path / "audit.log")
    return make_bindcar(named, BIND_AUDIT_LOG=path), path


def test_every_change_named_accepted_is_one_line(audited, named, unique):
    server, path = audited
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))[0] == 201
    status, _, response = server.request("POST", records_path(zone), {
        "name": "www2", "type": "A", "value": "192.0.2.1", "ttl": 300})
    assert status == 201
    request_id = response.getheader("X-Request-Id")
    assert server.request("PATCH", records_path(zone), {"rrsets": [{
        "name": "www2", "type": "A", "changetype": "REPLACE",
        "records": ["192.0.2.2", "192.0.2.3"]}]})[0] == 200
    assert server.request("PATCH", f"/api/v1/zones/{zone}",
                          {"allowTransfer": ["192.0.2.53"]})[0] == 200
    assert server.request("POST", records_path(zone),               # refused: no line
                          {"name": "x", "type": "A", "value": "nope"})[0] == 400
    assert server.request("POST", f"/api/v1/zones/{zone}/notify")[0] == 200
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    trail = lines(path)
    assert [e["operation"] for e in trail] == ["create", "record_add", "record_batch",
                                               "modify", "notify", "delete"]
    create, add, batch, modify = trail[:4]
    assert create["zone"] == zone and create["changes"] == ["create primary zone"]
    assert add["requestId"] == request_id and add["route"] == "POST /api/v1/zones/{name}/records"
    assert add["changes"] == [f"add www2.{zone}. 300 A 192.0.2.1"]
    assert add["serialAfter"] == add["serialBefore"] + 1 == batch["serialBefore"]
    assert batch["changes"] == [f"replace www2.{zone}. 3600 A 192.0.2.2 | 192.0.2.3"]
    assert modify["changes"][0].startswith("modzone allow_transfer")
    for entry in trail:
        assert entry["identity"].startswith("token:") and len(entry["identity"]) == 18
        assert entry["client"] == "127.0.0.1" and entry["time"].endswith("Z")
    text = open(path).read()
    assert TOKEN not in text and named.secrets["hmac-sha256"] not in text


def test_history_reads_a_zone_back_newest_first(audited, unique, make_bindcar, named):
    server, path = audited
    zone, other = f"{unique}.example", f"other.{unique}.example"
    for name in (zone, other):
        assert server.request("POST", "/api/v1/zones", zone_body(name, key=KEY))[0] == 201
    for i in range(5):
        assert server.request("POST", records_path(zone), {
            "name": f"h{i}", "type": "A", "value": "192.0.2.1"})[0] == 201
    status, body, _ = server.request("GET", f"/api/v1/zones/{zone}/history?limit=3")
    assert status == 200 and body["zone"] == zone
    assert [e["changes"][0].split()[1] for e in body["entries"]] == [
        f"h4.{zone}.", f"h3.{zone}.", f"h2.{zone}."]
    status, body, _ = server.request("GET", f"/api/v1/zones/{other}/history")
    assert [e["operation"] for e in body["entries"]] == ["create"]
    plain = make_bindcar(named)
    assert plain.request("GET", f"/api/v1/zones/{zone}/history")[0] == 404


def test_a_trail_that_cannot_be_written_stops_later_changes(named, make_bindcar, unique,
                                                            small_disk):
    path = os.path.join(small_disk, "audit.log")
    server = make_bindcar(named, BIND_AUDIT_LOG=path)
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))[0] == 201
    filler = fill(small_disk)
    text = "x" * 5000                            # a line longer than the file's last page
    status, _, _ = server.request("POST", records_path(zone), {
        "name": "lost", "type": "TXT", "value": text})
    assert status == 201                         # named applied it: it is not undone...
    failed = [r for r in server.log_records() if r["message"].startswith(
        "audit log not written")]
    assert failed and failed[0]["change"]["changes"][0].startswith(f"add lost.{zone}. 3600 TXT")
    status, body, _ = server.request("POST", records_path(zone), {   # ...but the next waits
        "name": "next", "type": "A", "value": "192.0.2.2"})
    assert status == 503 and "BIND_AUDIT_LOG" in body["error"]
    status, ready, _ = server.request("GET", "/ready", token=None)
    assert status == 503 and "audit log: not writable" in ready["checks"]
    os.unlink(filler)
    assert server.request("POST", records_path(zone), {
        "name": "next", "type": "A", "value": "192.0.2.2"})[0] == 201
    trail = lines(path)
    assert trail[-2]["event"] == "resumed" and trail[-1]["changes"] == [
        f"add next.{zone}. 3600 A 192.0.2.2"]
    poll(lambda: server.request("GET", "/ready", token=None)[0] == 200, 5, "/ready (1 s cache)")


def test_a_trail_that_cannot_be_opened_stops_the_start(named, make_bindcar, tmp_path):
    server = make_bindcar(named, start=False,
                          BIND_AUDIT_LOG=str(tmp_path / "missing" / "audit.log"))
    server.start(wait=False)
    assert server.proc.wait(timeout=20) == 2
    assert "BIND_AUDIT_LOG: cannot open" in server.log_text()


def test_a_torn_last_line_leaves_the_next_line_whole(named, make_bindcar, tmp_path, unique):
    path = tmp_path / "audit.log"
    path.write_text('{"time":"2026-01-01T00:00:00.000Z","zone":"cut')    # a crash mid-line
    server = make_bindcar(named, BIND_AUDIT_LOG=str(path))
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))[0] == 201
    assert json.loads(path.read_text().splitlines()[-1])["zone"] == zone


def test_external_dns_changes_are_in_the_trail(named, make_bindcar, tmp_path, unique):
    from conftest import free_port
    from externaldns import ExternalDNS, as_sent, owned
    path, port = str(tmp_path / "audit.log"), free_port()
    server = make_bindcar(named, BIND_AUDIT_LOG=path, WEBHOOK_ADDRESS=f"127.0.0.1:{port}")
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))[0] == 201
    ExternalDNS(port).apply(create=as_sent(owned(f"app.{zone}", "A", "192.0.2.1")))
    last = lines(path)[-1]
    assert last["operation"] == "webhook" and last["zone"] == zone
    assert last["changes"] == [f"create app.{zone} A", f"create a-app.{zone} TXT"]
