"""Scale-out: two real named on loopback, a primary driven by bindcar and a secondary
whose named.conf follows bindcar's catalog zone (RFC 9432).  Every wait is a poll with a
bound, never a fixed sleep."""

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import dns_proto
import zonefile
from conftest import accept_forever
from test_bindcar import files_of, zone_body

KEY = "update-key"
POLL = 30.0                     # seconds a test waits for the secondary to follow


def poll(check, seconds=POLL, what="the secondary to follow"):
    """``check()`` until it is true, for at most ``seconds``; its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"waited {seconds:g} s for {what}"
            return value
        time.sleep(0.05)


def secondary_conf(catalog, primary):
    """named.conf lines of a secondary that follows ``catalog`` on ``primary``."""
    options = (f'catalog-zones {{ zone "{catalog}" default-primaries {{ 127.0.0.1 port '
               f'{primary.dns_port}; }} min-update-interval 0; }};')
    zone = (f'zone "{catalog}" {{ type secondary; file "{catalog}.db"; '
            f'primaries {{ 127.0.0.1 port {primary.dns_port}; }}; }};\n')
    return options, zone


@pytest.fixture
def scale_out(make_named, make_bindcar, unique):
    """(primary, secondary, bindcar, catalog): bindcar keeps the catalog on the primary,
    the secondary follows it."""
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    options, zone = secondary_conf(catalog, primary)
    secondary = make_named(extra_options=options, extra_conf=zone, start=False)
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog,
                          BIND_SECONDARIES=f"127.0.0.1:{secondary.dns_port}")
    poll(lambda: catalog_of(server)[0] == 200, 20, "the catalog zone")
    secondary.start()           # a secondary started before its catalog exists waits its retry
    return primary, secondary, server, catalog


def catalog_of(server):
    status, body, _ = server.request("GET", "/api/v1/catalog")
    return status, body


def repaired(server):
    """The catalog is kept (not 503 while bindcar starts) and nothing is missing."""
    status, body = catalog_of(server)
    return status == 200 and body["missing"] == []


def serves(named, zone):
    return named.dig(zone, "SOA")[0] == "NOERROR"


def member_owner(client, catalog, zone):
    """The owner of ``zone``'s member in the catalog, read by AXFR (each create of a zone
    gets an owner of its own)."""
    owners = [r.name for r in client.axfr(catalog) if r.type == "PTR" and
              r.value == f"{zone}." and r.name.endswith(f".zones.{catalog}.")]
    assert len(owners) == 1, owners
    return owners[0]


def create(server, name, **config):
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(name, key=KEY, **config))
    assert status == 201, body


# ------------------------------------------------------------------ the secondary follows

def test_a_zone_its_records_and_its_delete_reach_the_secondary(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    poll(lambda: serves(secondary, zone))
    assert secondary.dig(f"www.{zone}")[1][0].endswith("192.0.2.10")
    status, body = catalog_of(server)
    assert (body["members"], body["missing"], body["orphans"]) == (1, [], [])
    status, body, _ = server.request("POST", f"/api/v1/zones/{zone}/records",
                                     {"name": "new", "type": "A", "value": "192.0.2.77"})
    assert status == 201, body
    poll(lambda: secondary.dig(f"new.{zone}")[1])            # NOTIFY, then IXFR
    status, body, _ = server.request("GET", f"/api/v1/zones/{zone}/propagation")
    assert status == 200 and body["zone"] == zone
    poll(lambda: server.request("GET", f"/api/v1/zones/{zone}/propagation")[1]
         ["secondaries"][0]["inSync"])
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    poll(lambda: not serves(secondary, zone))
    assert catalog_of(server)[1]["members"] == 0


def test_reconcile_keeps_the_member_bindcar_made(scale_out, unique):
    """A second member of a zone (an old one whose removal failed, of an earlier zone of
    this name) goes, and the one bindcar made stays, however the labels sort."""
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    client = dns_proto.DnsClient("127.0.0.1", primary.dns_port, KEY, "hmac-sha256",
                                 primary.secrets["hmac-sha256"])
    owner, stray = member_owner(client, catalog, zone), f"{'0' * 40}.zones.{catalog}."
    client.update(catalog, add=[dns_proto.Record(stray, 0, "PTR", f"{zone}.")])
    status, body = catalog_of(server)
    assert (body["members"], body["missing"], body["orphans"]) == (2, [], [zone])
    status, body, _ = server.request("POST", "/api/v1/catalog/reconcile")
    assert (body["added"], body["removed"]) == ([], [zone])
    assert member_owner(client, catalog, zone) == owner
    client.close()


def test_a_zone_deleted_and_created_again_reaches_the_secondary_as_new(scale_out, unique):
    """The zone made again has the create's serial, below the one its changes had raised
    the old zone to: the secondary must still drop the old zone and transfer the new."""
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    status, body, _ = server.request("POST", f"/api/v1/zones/{zone}/records",
                                     {"name": "old", "type": "A", "value": "192.0.2.1"})
    assert status == 201, body
    poll(lambda: secondary.dig(f"old.{zone}")[1])
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    create(server, zone, records=[{"name": "new", "type": "A", "value": "192.0.2.2"}])
    poll(lambda: secondary.dig(f"new.{zone}")[1], what="the new zone on the secondary")
    assert secondary.dig(f"old.{zone}")[0] == "NXDOMAIN"
    poll(lambda: server.request("GET", f"/api/v1/zones/{zone}/propagation")[1]
         ["secondaries"][0]["inSync"])


def test_primaries_get_the_secondaries_and_secondaries_stay_out(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    zone, closed = f"{unique}.example", f"{unique}-closed.example"
    create(server, zone)
    shown = primary.client().call(f"showzone {zone}")
    assert "also-notify" not in shown                   # bindcar NOTIFYs the secondaries
    assert 'allow-transfer { { 127.0.0.1/32; }; key "update-key"; }' in shown.replace("  ", " ")
    create(server, closed, allowTransfer=[], alsoNotify=[])          # explicit lists win
    shown = primary.client().call(f"showzone {closed}")
    assert "also-notify" not in shown and "127.0.0.1;" not in shown.split("allow-transfer")[1]
    sec = f"{unique}-sec.example"
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(sec, "secondary"))
    assert status == 201
    assert catalog_of(server)[1]["members"] == 2                    # not the secondary one
    # The catalog is bindcar's own: not listed, not to be changed through the API.
    assert catalog not in server.request("GET", "/api/v1/zones")[1]["zones"]
    for method, path, body in (("DELETE", f"/api/v1/zones/{catalog}", None),
                               ("PATCH", f"/api/v1/zones/{catalog}", {"allowTransfer": []}),
                               ("POST", f"/api/v1/zones/{catalog}/records",
                                {"name": "x", "type": "A", "value": "192.0.2.1"}),
                               ("PUT", f"/api/v1/zones/{catalog}/records",
                                {"name": "x", "type": "A", "currentValue": "192.0.2.1",
                                 "newValue": "192.0.2.2"}),
                               ("POST", "/api/v1/zones", zone_body(catalog))):
        status, answer, _ = server.request(method, path, body)
        assert status == 409 and "catalog" in answer["error"], (method, path, answer)


def test_the_invariant_is_repaired_on_request_and_at_start(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    client = dns_proto.DnsClient("127.0.0.1", primary.dns_port, KEY, "hmac-sha256",
                                 primary.secrets["hmac-sha256"])
    owner = member_owner(client, catalog, zone)
    stray = zonefile.catalog_member("stray.example", catalog)
    client.update(catalog, delete=[(owner, "PTR", None)],
                  add=[dns_proto.Record(stray[0], 0, "PTR", stray[1])])       # by hand
    status, body = catalog_of(server)
    assert (body["missing"], body["orphans"]) == ([zone], ["stray.example"])
    status, body, _ = server.request("POST", "/api/v1/catalog/reconcile")
    assert status == 200 and (body["added"], body["removed"]) == ([zone], ["stray.example"])
    assert (catalog_of(server)[1]["missing"], catalog_of(server)[1]["orphans"]) == ([], [])
    client.update(catalog, delete=[(member_owner(client, catalog, zone), "PTR", None)])
    server.stop()
    server.start()
    poll(lambda: repaired(server), 20, "the repair at start")
    assert any(r.get("message") == "catalog repaired: member added" and r.get("zone") == zone
               for r in server.log_records())
    metrics = server.request("GET", "/metrics", token=None)[1]
    assert "bindcar_catalog_repairs_total 1" in metrics
    assert "bindcar_catalog_members 1" in metrics
    client.close()


def test_propagation_shows_a_stopped_secondary(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    poll(lambda: serves(secondary, zone))
    path = f"/api/v1/zones/{zone}/propagation"
    poll(lambda: server.request("GET", path)[1]["secondaries"][0]["inSync"])
    secondary.proc.send_signal(signal.SIGSTOP)
    try:
        status, body, _ = server.request("GET", path)
        answer = body["secondaries"][0]
        assert status == 200 and answer["inSync"] is False and answer["serial"] is None
        assert answer["error"] and answer["server"] == f"127.0.0.1:{secondary.dns_port}"
        assert answer["address"] == answer["server"]
    finally:
        secondary.proc.send_signal(signal.SIGCONT)
    status, body, _ = server.request("GET", f"/api/v1/zones/nothere-{unique}.example/propagation")
    assert status == 404


# ------------------------------------------------------------------ all or nothing

def test_a_catalog_update_that_fails_undoes_the_create(make_named, make_bindcar, unique):
    """named.conf's catalog without allow-update for bindcar's key: said at start, and a
    create is refused whole."""
    catalog = f"cat-{unique}.test"
    primary = make_named(extra_conf=f'zone "{catalog}" {{ type primary; file "cat.db"; }};\n',
                         notify="explicit")
    with open(os.path.join(primary.dir, "cat.db"), "w") as f:
        f.write("$TTL 60\n@ SOA invalid. invalid. 1 60 30 600 60\n@ NS invalid.\n"
                'version TXT "2"\n')
    primary.client().call("reload")
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog)
    poll(lambda: any(r.get("message", "").startswith("cannot keep the catalog")
                     for r in server.log_records()), 20, "the warning at start")
    zone = f"{unique}.example"
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))
    assert status == 503 and "allow-update" in body["error"], body
    assert primary.dig(zone, "SOA")[0] == "REFUSED"
    assert not [f for f in files_of(server.zone_dir) if f.startswith(zone)]
    assert zone not in server.request("GET", "/api/v1/zones")[1]["zones"]


class DnsRelay:
    """A relay for named's DNS port that can swallow UPDATEs (bindcar then waits for an
    answer that never comes, as if killed between addzone and its catalog UPDATE), or
    pass an UPDATE on and lose named's answer with the connection (``lose``: how many)."""

    def __init__(self, named):
        self.target = ("127.0.0.1", named.dns_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.swallow = threading.Event()
        self.swallowed = threading.Event()
        self.lose, self.lost_ids = 0, set()
        accept_forever(self.listener, self._relay)

    def close(self):
        self.listener.close()

    def _relay(self, client):
        upstream = socket.create_connection(self.target)
        threading.Thread(target=self._back, args=(upstream, client), daemon=True).start()
        with client:
            while True:
                head = client.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return
                message = client.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                opcode = (message[2] >> 3) & 0xF
                if opcode == dns_proto.OPCODE_UPDATE and self.swallow.is_set():
                    self.swallowed.set()
                    continue
                if opcode == dns_proto.OPCODE_UPDATE and self.lose:
                    self.lose -= 1
                    self.lost_ids.add(message[:2])
                upstream.sendall(head + message)

    def _back(self, upstream, client):
        with upstream:
            while True:
                try:
                    head = upstream.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    message = upstream.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                    if message[:2] in self.lost_ids:
                        self.lost_ids.discard(message[:2])
                        client.shutdown(socket.SHUT_RDWR)   # named applied it; the
                        return                              # connection breaks
                    client.sendall(head + message)
                except OSError:
                    return


def test_killed_between_addzone_and_the_catalog_update_is_repaired_at_start(
        make_named, make_bindcar, unique):
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    options, zone_conf = secondary_conf(catalog, primary)
    secondary = make_named(extra_options=options, extra_conf=zone_conf, start=False)
    relay = DnsRelay(primary)
    settings = {"BIND_CATALOG_ZONE": catalog, "NSUPDATE_TIMEOUT": "60",
                "BIND_SECONDARIES": f"127.0.0.1:{secondary.dns_port}"}
    server = make_bindcar(primary, NSUPDATE_PORT=str(relay.port), **settings)
    poll(lambda: catalog_of(server)[0] == 200, 20, "the catalog zone")
    secondary.start()
    zone = f"{unique}.example"
    relay.swallow.set()

    def create_and_be_killed():
        try:
            server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))
        except OSError:
            pass                                # bindcar is killed before it answers

    threading.Thread(target=create_and_be_killed, daemon=True).start()
    poll(relay.swallowed.is_set, 20, "the catalog UPDATE")
    assert serves(primary, zone)                  # addzone done, the member not yet
    server.stop(signal.SIGKILL)
    relay.close()
    again = make_bindcar(primary, zone_dir=server.zone_dir, **settings)
    poll(lambda: repaired(again), 20, "the repair at start")
    assert zone in again.request("GET", "/api/v1/zones")[1]["zones"]
    poll(lambda: serves(secondary, zone))


# ------------------------------------------------------------------ many zones

@pytest.mark.slow
def test_five_hundred_zones_are_all_served_by_the_secondary(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    names = [f"z{i}-{unique}.example" for i in range(500)]
    conn = server.connection()
    for name in names:
        status, body, _ = server.request("POST", "/api/v1/zones", zone_body(name, key=KEY),
                                         conn=conn)
        assert status == 201, body
    conn.close()
    assert catalog_of(server)[1]["members"] == 500
    client = dns_proto.DnsClient("127.0.0.1", secondary.dns_port)

    def all_served():
        for name in list(names):
            try:
                if client.query(name, "SOA"):
                    names.remove(name)
            except dns_proto.DnsError:
                return False
        return not names

    try:
        poll(all_served, 120, "500 zones on the secondary")
    finally:
        client.close()


def test_a_lost_answer_to_the_catalog_update_leaves_nothing_half_done(make_named, make_bindcar,
                                                                      unique):
    """named applied the member change, its answer was lost: a create is undone whole (the
    member too), a delete keeps the zone and its member."""
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    relay = DnsRelay(primary)
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog, NSUPDATE_PORT=str(relay.port),
                          NSUPDATE_TIMEOUT="2")
    poll(lambda: catalog_of(server)[0] == 200, 20, "the catalog zone")
    ghost, kept = f"ghost-{unique}.example", f"kept-{unique}.example"
    relay.lose = 1
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(ghost, key=KEY))
    assert status == 503, body
    assert primary.dig(ghost, "SOA")[0] == "REFUSED"
    assert catalog_of(server)[1] == dict(catalog_of(server)[1], members=0, orphans=[],
                                         missing=[])
    create(server, kept)
    relay.lose = 1
    status, body, _ = server.request("DELETE", f"/api/v1/zones/{kept}")
    assert status == 503, body
    assert serves(primary, kept)
    status, body = catalog_of(server)
    assert (body["members"], body["missing"], body["orphans"]) == (1, [], [])
    relay.close()


def test_a_primary_named_cannot_load_stays_a_member(make_named, make_bindcar, unique):
    """A zone file that fails to load at named's start must not make the secondaries
    drop the zone."""
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    settings = {"BIND_CATALOG_ZONE": catalog}
    server = make_bindcar(primary, **settings)
    poll(lambda: catalog_of(server)[0] == 200, 20, "the catalog zone")
    zone = f"{unique}.example"
    create(server, zone)
    server.stop()
    primary.stop()
    with open(os.path.join(server.zone_dir, f"{zone}.zone"), "a") as f:
        f.write("this is not a record\n")
    primary.start()
    again = make_bindcar(primary, zone_dir=server.zone_dir, **settings)
    poll(lambda: catalog_of(again)[0] == 200, 20, "the catalog zone")
    status, body = catalog_of(again)
    assert (body["members"], body["missing"], body["orphans"]) == (1, [], [])
    assert not any(r.get("message") == "catalog repaired: member removed"
                   for r in again.log_records())


def test_a_catalog_named_lost_comes_back_with_its_serial(scale_out, unique):
    """Secondaries ignore a catalog whose serial went back: bindcar loads its file again."""
    primary, secondary, server, catalog = scale_out
    first, second = f"a-{unique}.example", f"b-{unique}.example"
    create(server, first)
    poll(lambda: serves(secondary, first))
    serial = catalog_of(server)[1]["serial"]
    server.stop()
    primary.client().call(f"delzone {catalog}")
    server.start()
    poll(lambda: catalog_of(server)[0] == 200, 20, "the catalog zone again")
    assert catalog_of(server)[1]["serial"] >= serial
    create(server, second)
    poll(lambda: serves(secondary, second))
    assert serves(secondary, first)


def test_a_catalog_name_that_is_no_catalog_is_left_alone(make_named, make_bindcar, unique):
    primary = make_named(notify="explicit")
    data = f"{unique}.example"
    plain = make_bindcar(primary)
    create(plain, data)
    plain.stop()
    server = make_bindcar(primary, zone_dir=plain.zone_dir, BIND_CATALOG_ZONE=data)
    # /ready says "not kept" while the start's check runs too: wait for its verdict.
    poll(lambda: "not a catalog" in catalog_of(server)[1].get("error", ""), 20,
         "the catalog check")
    status, ready, _ = server.request("GET", "/ready", token=None)
    assert status == 503 and ready["checks"][-1] == "catalog: not kept"
    status, body = catalog_of(server)
    assert status == 503 and "not a catalog" in body["error"]
    status, body, _ = server.request("POST", "/api/v1/zones",
                                     zone_body(f"x-{unique}.example", key=KEY))
    assert status == 503
    assert "PTR" not in subprocess.run(["dig", "@127.0.0.1", "-p", str(primary.dns_port), "-y",
                                        f"hmac-sha256:{KEY}:{primary.secrets['hmac-sha256']}",
                                        data, "AXFR"], capture_output=True, text=True).stdout


def test_member_properties_go_with_their_member(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    client = dns_proto.DnsClient("127.0.0.1", primary.dns_port, KEY, "hmac-sha256",
                                 primary.secrets["hmac-sha256"])
    owner = member_owner(client, catalog, zone)
    client.update(catalog, add=[dns_proto.Record(f"group.{owner}", 0, "TXT", '"blue"')])
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert [r for r in client.axfr(catalog) if r.name.endswith(owner)] == []
    client.close()
    assert server.request("GET", "/ready", token=None)[1]["checks"][-1] == "catalog: kept"


def test_no_repair_before_the_zones_are_checked(make_named, make_bindcar, unique):
    """A reconcile while bindcar still checks its zones against named (here: named frozen)
    must not take the zones not yet checked for strays."""
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    settings = {"BIND_CATALOG_ZONE": catalog, "RNDC_TIMEOUT": "2"}
    server = make_bindcar(primary, **settings)
    poll(lambda: catalog_of(server)[0] == 200, 20, "the catalog zone")
    zones = [f"z{i}-{unique}.example" for i in range(3)]
    for zone in zones:
        create(server, zone)
    server.stop()
    primary.proc.send_signal(signal.SIGSTOP)
    try:
        again = make_bindcar(primary, zone_dir=server.zone_dir, **settings)
        status, body, _ = again.request("POST", "/api/v1/catalog/reconcile")
        assert status == 503 and "checking" in body["error"], body
        assert again.request("GET", "/ready", token=None)[0] == 503
    finally:
        primary.proc.send_signal(signal.SIGCONT)
    poll(lambda: repaired(again), 30, "the checks and the catalog")
    assert catalog_of(again)[1]["members"] == 3
    assert not any(r.get("message") == "catalog repaired: member removed"
                   for r in again.log_records())


def test_a_catalog_named_loses_while_bindcar_runs_is_made_again(scale_out, unique):
    primary, secondary, server, catalog = scale_out
    first, second = f"a-{unique}.example", f"b-{unique}.example"
    create(server, first)
    primary.client().call(f"delzone {catalog}")
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(second, key=KEY))
    assert status == 503 and "not serve" in body["error"], body
    assert primary.dig(second, "SOA")[0] == "REFUSED"
    status, body, _ = server.request("POST", "/api/v1/catalog/reconcile")
    assert status == 200, body
    create(server, second)
    assert (catalog_of(server)[1]["members"], repaired(server)) == (2, True)
    poll(lambda: serves(secondary, second))


def test_ready_asks_named_for_the_catalog_and_one_lost_is_made_again(scale_out, unique):
    """No call touches the catalog: /ready asks named itself, says not kept, and the
    catalog comes back with its member, by itself."""
    primary, secondary, server, catalog = scale_out
    zone = f"{unique}.example"
    create(server, zone)
    assert server.request("GET", "/ready", token=None)[0] == 200
    primary.client().call(f"delzone {catalog}")

    def said():
        server.request("GET", "/ready", token=None)
        return any(r.get("message") == "not ready: catalog" for r in server.log_records())

    poll(said, 10, "/ready to see the catalog gone")
    poll(lambda: server.request("GET", "/ready", token=None)[0] == 200 and repaired(server),
         10, "the catalog made again")
    assert catalog_of(server)[1]["members"] == 1
    poll(lambda: serves(secondary, zone))


def test_secondaries_must_be_servers(make_bindcar, named):
    for value in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "ff02::1", "10.0.0.0/8", "ns_1",
                  "-ns1", "ns1:0", "ns1:99999", "ns1..example"):
        server = make_bindcar(named, start=False, BIND_SECONDARIES=value)
        server.start(wait=False)
        assert server.proc.wait(20) == 2, value
        assert "BIND_SECONDARIES" in server.log_text(), value
