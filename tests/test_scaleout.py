"""Scale-out as Kubernetes runs it: secondaries on loopback addresses of their own
(127.0.0.2, .3: one source address each, as a pod has), started in any order, stopped,
killed and emptied, moved to a new address; transfers by key; bindcar's own NOTIFYs.
Every wait is a poll with a bound, never a fixed sleep."""

import base64
import json
import os
import secrets
import shutil
import signal
import sys

import pytest

from conftest import ROOT, free_port
from test_bindcar import zone_body
from test_catalog import KEY, catalog_of, poll

CATCH_UP = 10.0                 # seconds a secondary has to catch up (the bound)
XFR = "xfr-key"

# bindcar with the tests' resolver: a JSON file {name: [addresses]} read at each lookup
# (the system's resolver, and /etc/hosts, stay untouched).
RESOLVER = """\
import ipaddress, json, sys
sys.path.insert(0, sys.argv[2])
import bindcar

def resolve_host(name):
    with open(sys.argv[1]) as f:
        return sorted(ipaddress.ip_address(a) for a in json.load(f).get(name, []))

bindcar.resolve_host = resolve_host
sys.exit(bindcar.main([]))
"""


def secondary_of(make_named, catalog, primary, address, key=None, port=None, start=True):
    """A BIND secondary on ``address`` following ``catalog`` on ``primary`` (by ``key``,
    ``(name, secret)``, when given).  bindcar's NOTIFYs come from bindcar's address, not
    named's: ``allow-notify`` lets them in, signed with the key, or from loopback."""
    via = f' key "{key[0]}"' if key else ""
    keys = f'key "{key[0]}" {{ algorithm hmac-sha256; secret "{key[1]}"; }};\n' if key else ""
    primaries = f"127.0.0.1 port {primary.dns_port}{via};"
    notify = f'allow-notify {{ key "{key[0]}"; }};' if key else \
        "allow-notify { 127.0.0.0/8; };"
    options = (f'catalog-zones {{ zone "{catalog}" default-primaries {{ {primaries} }} '
               f'min-update-interval 0; }}; {notify}')
    conf = (f'{keys}zone "{catalog}" {{ type secondary; file "{catalog}.db"; '
            f'primaries {{ {primaries} }}; }};\n')
    return make_named(extra_options=options, extra_conf=conf, address=address,
                      dns_port=port, start=start)


def serves(named, zone, name=None):
    status, answers = named.dig(name or zone, "SOA" if name is None else "A")
    return status == "NOERROR" and bool(answers)


def create(server, zone, **config):
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY, **config))
    assert status == 201, body


def add(server, zone, name, value):
    status, body, _ = server.request("POST", f"/api/v1/zones/{zone}/records",
                                     {"name": name, "type": "A", "value": value})
    assert status == 201, body


def kept(server):
    return catalog_of(server)[0] == 200


def secondary_status(server, address):
    return next(s for s in catalog_of(server)[1]["secondaries"] if s["address"] == address)


def config_of(primary, zone):
    return primary.client().call(f"showzone {zone}")


@pytest.fixture
def transfer_key():
    return XFR, base64.b64encode(secrets.token_bytes(32)).decode()


def keyed_primary(make_named, transfer_key):
    name, secret = transfer_key
    key = f'key "{name}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    return make_named(notify="explicit", extra_conf=key)


# ------------------------------------------------------------------ start order

def test_a_secondary_started_first_serves_a_new_zone_at_once(make_named, make_bindcar, unique):
    """Started before bindcar made the catalog, its first refresh failed: named's own
    NOTIFY would wait behind the retry timer; bindcar's NOTIFYs, repeated, do not."""
    catalog, zone = f"cat-{unique}.test", f"{unique}.example"
    primary = make_named(notify="explicit")
    secondary = secondary_of(make_named, catalog, primary, "127.0.0.2")
    poll(lambda: "refresh: unexpected rcode" in secondary.log_tail(200), 10,
         "its first refresh of the catalog, refused")
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog,
                          BIND_SECONDARIES=f"127.0.0.2:{secondary.dns_port}")
    poll(lambda: kept(server), 20, "the catalog")
    create(server, zone)
    poll(lambda: serves(secondary, zone), CATCH_UP, "the secondary started first")
    add(server, zone, "late", "192.0.2.5")
    poll(lambda: serves(secondary, zone, f"late.{zone}"), CATCH_UP, "the record")
    poll(lambda: catalog_of(server)[1]["healthy"], CATCH_UP, "healthy")
    status = secondary_status(server, f"127.0.0.2:{secondary.dns_port}")
    assert status["reachable"] and status["lagging"] == [] and status["refused"] == []
    assert "bindcar_notifies_sent_total" in server.request("GET", "/metrics", token=None)[1]


def test_a_knot_secondary_started_first_serves_a_new_zone(make_named, make_bindcar, unique,
                                                         tmp_path, transfer_key):
    """A second implementation: Knot DNS interprets the catalog, transfers by key, and
    takes bindcar's NOTIFYs signed with that key."""
    knot = pytest.importorskip("knot")
    if not os.path.exists(knot.KNOTD):
        pytest.fail("knotd is not installed: run `make test`, which installs knot")
    catalog, zone = f"cat-{unique}.test", f"{unique}.example"
    primary = keyed_primary(make_named, transfer_key)
    port = free_port()
    secondary = knot.KnotServer(str(tmp_path / "knot"), "127.0.0.2", port, catalog,
                                "127.0.0.1", primary.dns_port,
                                key=(XFR, "hmac-sha256", transfer_key[1]),
                                notify_from="127.0.0.0/8")
    secondary.start()
    try:
        server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog,
                              BIND_SECONDARIES=f"127.0.0.2:{port}", BIND_TRANSFER_KEY=XFR,
                              BIND_TRANSFER_KEY_SECRET=transfer_key[1])
        poll(lambda: kept(server), 20, "the catalog")
        create(server, zone)
        poll(lambda: serves(secondary, zone), CATCH_UP, "knotd")
        add(server, zone, "late", "192.0.2.6")
        poll(lambda: serves(secondary, zone, f"late.{zone}"), CATCH_UP, "the record on knotd")
    finally:
        secondary.stop()


# ------------------------------------------------------------------ transfers by key

def test_transfers_by_key_and_no_address_in_any_zone(make_named, make_bindcar, unique,
                                                     transfer_key):
    catalog, zone = f"cat-{unique}.test", f"{unique}.example"
    primary = keyed_primary(make_named, transfer_key)
    keyed = secondary_of(make_named, catalog, primary, "127.0.0.2", key=transfer_key)
    keyless = secondary_of(make_named, catalog, primary, "127.0.0.3")
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog, BIND_TRANSFER_KEY=XFR,
                          BIND_TRANSFER_KEY_SECRET=transfer_key[1],
                          BIND_SECONDARIES=f"127.0.0.2:{keyed.dns_port},"
                                           f"127.0.0.3:{keyless.dns_port}")
    poll(lambda: kept(server), 20, "the catalog")
    create(server, zone)
    create(server, f"open-{zone}", allowTransfer=["192.0.2.1"])     # the key is added
    poll(lambda: serves(keyed, zone) and serves(keyed, f"open-{zone}"), CATCH_UP, "by key")
    for name in (catalog, zone, f"open-{zone}"):
        shown = config_of(primary, name)
        assert f'key "{XFR}"' in shown and "127.0.0." not in shown, shown
        assert "also-notify" not in shown
    assert not serves(keyless, zone)
    assert "REFUSED" in keyless.dig(catalog, "AXFR")[0] or not serves(keyless, catalog)
    poll(lambda: secondary_status(server, f"127.0.0.3:{keyless.dns_port}")["lagging"],
         CATCH_UP, "the keyless secondary shown lagging")
    assert catalog_of(server)[1]["healthy"] is False
    poll(lambda: secondary_status(server, f"127.0.0.2:{keyed.dns_port}")["lagging"] == [],
         CATCH_UP, "the keyed secondary shown in step")


# ------------------------------------------------------------------ secondaries by name

def resolving_bindcar(make_bindcar, primary, table_path, **env):
    server = make_bindcar(primary, start=False, **env)
    server.command = [sys.executable, "-c", RESOLVER, table_path, ROOT]
    return server.start()


def point(table_path, name, *addresses):
    with open(table_path + ".new", "w") as f:
        json.dump({name: list(addresses)}, f)
    os.replace(table_path + ".new", table_path)


def test_a_secondary_name_that_moves_is_followed(make_named, make_bindcar, unique, tmp_path):
    """No transfer key: zones made while the name gave 127.0.0.2 let .2 transfer them.
    Once it gives .3, the catalog and those zones let .3 in instead, and bindcar's
    NOTIFYs go to .3: every zone reaches the secondary there, records too."""
    catalog, name = f"cat-{unique}.test", "secondaries.bindcar.test"
    primary = make_named(notify="explicit")
    port = free_port()
    old = secondary_of(make_named, catalog, primary, "127.0.0.2", port=port)
    new = secondary_of(make_named, catalog, primary, "127.0.0.3", port=port)
    table = str(tmp_path / "hosts.json")
    point(table, name, "127.0.0.2")
    server = resolving_bindcar(make_bindcar, primary, table, BIND_CATALOG_ZONE=catalog,
                               BIND_SECONDARIES=f"{name}:{port}")
    poll(lambda: kept(server), 20, "the catalog")
    zones = [f"z{i}-{unique}.example" for i in range(3)]
    create(server, zones[0])
    poll(lambda: serves(old, zones[0]), CATCH_UP, "the secondary at .2")
    assert "127.0.0.2" in config_of(primary, zones[0])
    point(table, name, "127.0.0.3")
    create(server, zones[1])
    status, body, _ = server.request("GET", f"/api/v1/zones/{zones[1]}/propagation")
    assert [(s["server"], s["address"]) for s in body["secondaries"]] == \
        [(f"{name}:{port}", f"127.0.0.3:{port}")]                    # resolved for this ask
    create(server, zones[2])
    poll(lambda: all(serves(new, z) for z in zones), 2 * CATCH_UP, "every zone at .3")
    for zone in zones + [catalog]:
        poll(lambda: "127.0.0.2" not in config_of(primary, zone), CATCH_UP, "the old address")
    add(server, zones[0], "moved", "192.0.2.7")
    poll(lambda: serves(new, zones[0], f"moved.{zones[0]}"), CATCH_UP, "the NOTIFY at .3")
    assert any(r.get("message") == "secondary resolved" and r.get("addresses") == ["127.0.0.3"]
               for r in server.log_records())


# ------------------------------------------------------------------ a secondary that was away

def followed(make_named, make_bindcar, unique, count):
    """A primary, a secondary on 127.0.0.2 following its catalog, bindcar, and ``count``
    zones the secondary serves: (primary, secondary, its address, bindcar, catalog,
    zones)."""
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    secondary = secondary_of(make_named, catalog, primary, "127.0.0.2")
    address = f"127.0.0.2:{secondary.dns_port}"
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog, BIND_SECONDARIES=address)
    poll(lambda: kept(server), 20, "the catalog")
    zones = [f"z{i}-{unique}.example" for i in range(count)]
    for zone in zones:
        create(server, zone)
    poll(lambda: all(serves(secondary, z) for z in zones), 3 * CATCH_UP, "every member")
    return primary, secondary, address, server, catalog, zones


def test_a_secondary_killed_and_emptied_serves_every_member_again(make_named, make_bindcar,
                                                                  unique):
    primary, secondary, address, server, catalog, zones = followed(
        make_named, make_bindcar, unique, 20)
    secondary.stop(signal.SIGKILL)
    for entry in os.listdir(secondary.dir):         # its zone files and its NZD go
        if entry.endswith((".db", ".nzd", ".nzd-lock", ".jnl")) or entry.startswith("__catz"):
            path = os.path.join(secondary.dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    poll(lambda: not secondary_status(server, address)["reachable"], CATCH_UP, "seen away")
    assert catalog_of(server)[1]["healthy"] is False
    status, body, _ = server.request("GET", f"/api/v1/zones/{zones[0]}/propagation")
    assert body["secondaries"][0]["inSync"] is False and body["secondaries"][0]["error"]
    add(server, zones[0], "meanwhile", "192.0.2.8")
    secondary.start()
    poll(lambda: all(serves(secondary, z) for z in zones), 3 * CATCH_UP, "every member again")
    poll(lambda: serves(secondary, zones[0], f"meanwhile.{zones[0]}"), CATCH_UP, "the change")
    poll(lambda: catalog_of(server)[1]["healthy"], CATCH_UP, "healthy again")


def test_a_secondary_down_while_records_change_gets_every_change(make_named, make_bindcar,
                                                                 unique):
    """Killed (its files kept) while records change in zones it has, started again once
    named has stopped sending NOTIFYs of its own: SOA refresh is an hour, so only
    bindcar's NOTIFYs, sent again once it answers, bring the changes."""
    primary, secondary, address, server, catalog, zones = followed(
        make_named, make_bindcar, unique, 10)
    secondary.stop(signal.SIGKILL)
    for zone in zones:
        add(server, zone, "meanwhile", "192.0.2.9")
    poll(lambda: not secondary_status(server, address)["reachable"], CATCH_UP, "seen away")
    lagging = secondary_status(server, address)["lagging"]
    assert set(lagging) <= set(zones + [catalog]) and lagging, lagging

    def named_gave_up(zone):            # its own NOTIFYs (an also-notify), if it sends any
        return "also-notify" not in config_of(primary, zone) or \
            f"zone {zone}/IN: notify to {address.replace(':', '#')} failed" in \
            primary.log_tail(5000)

    poll(lambda: all(named_gave_up(z) for z in zones), 60, "named's NOTIFYs to end")
    secondary.start()
    poll(lambda: all(serves(secondary, z, f"meanwhile.{z}") for z in zones), CATCH_UP,
         "every change")
    poll(lambda: secondary_status(server, address)["lagging"] == [], CATCH_UP, "caught up")


# ------------------------------------------------------------------ settings that change

def test_secondaries_changed_between_two_starts_need_no_hand_work(make_named, make_bindcar,
                                                                  unique):
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    old = secondary_of(make_named, catalog, primary, "127.0.0.2")
    new = secondary_of(make_named, catalog, primary, "127.0.0.3")
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog,
                          BIND_SECONDARIES=f"127.0.0.2:{old.dns_port}")
    poll(lambda: kept(server), 20, "the catalog")
    zones = [f"z{i}-{unique}.example" for i in range(5)]
    for zone in zones:
        create(server, zone)
    create(server, f"mine-{unique}.example", allowTransfer=["192.0.2.1"])  # the caller's own
    poll(lambda: all(serves(old, z) for z in zones), 3 * CATCH_UP, "the old secondary")
    server.stop()
    server.env["BIND_SECONDARIES"] = f"127.0.0.3:{new.dns_port}"
    server.start()
    address = f"127.0.0.3:{new.dns_port}"


    def served_and_shown():
        status, body = catalog_of(server)
        assert status != 200 or not body["healthy"], "healthy while a secondary is refused"
        return all(serves(new, z) for z in zones) and status == 200 and body["refused"]

    poll(served_and_shown, 3 * CATCH_UP, "the new secondary, with no hand work")
    for zone in zones + [catalog]:
        assert "127.0.0.2" not in config_of(primary, zone)
    assert "192.0.2.1" in config_of(primary, f"mine-{unique}.example")   # left as made
    assert catalog_of(server)[1]["refused"] == [f"mine-{unique}.example"]
    assert secondary_status(server, address)["refused"] == [f"mine-{unique}.example"]


def test_an_older_bindcars_lists_and_a_key_set_later_are_brought_in_line(
        make_named, make_bindcar, unique, transfer_key):
    """Lists as an older bindcar wrote them (also-notify and a flat allow-transfer of the
    secondaries, the same on the catalog) become the group; a transfer key set at the
    next start replaces the group; a caller's own list keeps its addresses."""
    catalog, zone, mine = f"cat-{unique}.test", f"{unique}.example", f"mine-{unique}.example"
    primary = keyed_primary(make_named, transfer_key)
    secondary = secondary_of(make_named, catalog, primary, "127.0.0.2")
    address = f"127.0.0.2:{secondary.dns_port}"
    server = make_bindcar(primary, BIND_CATALOG_ZONE=catalog, BIND_SECONDARIES=address)
    poll(lambda: kept(server), 20, "the catalog")
    create(server, zone)
    create(server, mine, allowTransfer=["192.0.2.1"])
    server.stop()
    old = (f'also-notify {{ 127.0.0.2 port {secondary.dns_port}; }}; '
           'allow-transfer { 127.0.0.2; key "update-key"; };')
    for name in (catalog, zone):
        shown = config_of(primary, name)
        clause = shown[shown.index("{"):].replace(
            'allow-transfer  { { 127.0.0.2/32; }; key "update-key"; };', old)
        assert old in clause, clause
        primary.client().call(f"modzone {name} {clause}")
    server.start()
    for name in (catalog, zone):
        poll(lambda: "also-notify" not in config_of(primary, name), CATCH_UP, "in line")
        assert "{ { 127.0.0.2/32; };" in config_of(primary, name).replace("  ", " ")
    server.stop()
    server.env.update(BIND_TRANSFER_KEY=XFR, BIND_TRANSFER_KEY_SECRET=transfer_key[1])
    server.start()
    for name in (catalog, zone):
        poll(lambda: f'key "{XFR}"' in config_of(primary, name), CATCH_UP, "the key")
        assert "127.0.0.2" not in config_of(primary, name)
    assert "192.0.2.1" in config_of(primary, mine) and XFR not in config_of(primary, mine)
