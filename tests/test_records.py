"""The records API end to end: bindcar as a process, named's DNS port, dig to check.

Zones are created through bindcar with ``updateKeyName: update-key``, the key the
test bindcars sign with (conftest sets NSUPDATE_KEY_NAME and NSUPDATE_PORT).
"""

import os
import threading

import pytest

import dns_proto
from conftest import free_port
from test_bindcar import files_of, nsupdate, zone_body

KEY = "update-key"


def records_path(zone):
    return f"/api/v1/zones/{zone}/records"


@pytest.fixture
def zone(bindcar, unique):
    """A primary zone of this test's own that takes updates by bindcar's key."""
    name = f"{unique}.example"
    status, body, _ = bindcar.request("POST", "/api/v1/zones", zone_body(name, key=KEY))
    assert status == 201, body
    return name


def call(server, method, zone, body=None, query=""):
    status, answer, _ = server.request(method, records_path(zone) + query, body)
    return status, answer


def dig(named, name, rtype="A"):
    """The values named serves for name/rtype, sorted."""
    status, answers = named.dig(name, rtype)
    return sorted(line.split(None, 4)[4] for line in answers if f"\t{rtype}\t" in line)


def serial(named, zone):
    return int(dig(named, zone, "SOA")[0].split()[2])


def listing(server, zone, query=""):
    status, answer = call(server, "GET", zone, query=query)
    assert status == 200, answer
    return answer


# ------------------------------------------------------------------ each endpoint

EVERY_TYPE = [
    ({"name": "a", "type": "A", "value": "192.0.2.1"}, "a", "192.0.2.1"),
    ({"name": "a6", "type": "AAAA", "value": "2001:DB8::1"}, "a6", "2001:db8::1"),
    ({"name": "alias", "type": "CNAME", "value": "www"}, "alias", "www.{z}."),
    ({"name": "@", "type": "MX", "value": "mail.example.net.", "priority": 10}, "@",
     "10 mail.example.net."),
    ({"name": "t", "type": "TXT", "value": 'say "hi"; \\ ok'}, "t", '"say \\"hi\\"; \\\\ ok"'),
    ({"name": "sub", "type": "NS", "value": "ns.example.net."}, "sub", "ns.example.net."),
    ({"name": "p", "type": "PTR", "value": "host.example.net."}, "p", "host.example.net."),
    ({"name": "_sip._tcp", "type": "SRV", "value": "5 5060 sip.example.net.", "priority": 1},
     "_sip._tcp", "1 5 5060 sip.example.net."),
    ({"name": "@", "type": "CAA", "value": '0 issue "ca.example.net"'}, "@",
     '0 issue "ca.example.net"'),
]


def test_every_type_is_added_served_and_listed(bindcar, named, zone):
    for body, name, value in EVERY_TYPE:
        status, answer = call(bindcar, "POST", zone, body)
        assert status == 201, answer
        assert answer["message"] == f"Record added to zone {zone}"
        assert answer["details"]["zone"] == zone
        assert answer["details"]["record"]["ttl"] == 3600       # the Rust bindcar's default
        owner = zone if name == "@" else f"{name}.{zone}"
        if body["type"] != "NS":                  # a delegation: a referral, no answer
            assert value.format(z=zone) in dig(named, owner, body["type"]), body
    listed = listing(bindcar, zone)["records"]
    for body, name, value in EVERY_TYPE:
        entry = {"name": name, "type": body["type"], "ttl": 3600,
                 "value": value.format(z=zone)}
        if body["type"] in ("MX", "SRV"):
            priority, entry["value"] = entry["value"].split(" ", 1)
            entry["priority"] = int(priority)
        assert entry in listed, entry


def test_put_replaces_one_value_in_one_update(bindcar, named, zone):
    assert call(bindcar, "POST", zone, {"name": "w", "type": "A", "value": "192.0.2.1"})[0] == 201
    assert call(bindcar, "POST", zone, {"name": "w", "type": "A", "value": "192.0.2.2"})[0] == 201
    before = serial(named, zone)
    status, answer = call(bindcar, "PUT", zone, {"name": "w", "type": "A", "ttl": 60,
                                                 "currentValue": "192.0.2.1",
                                                 "newValue": "192.0.2.3"})
    assert status == 200 and answer["message"] == f"Record updated in zone {zone}"
    assert answer["details"]["record"] == {"name": "w", "type": "A", "ttl": 60,
                                           "currentValue": "192.0.2.1",
                                           "newValue": "192.0.2.3"}
    assert dig(named, f"w.{zone}") == ["192.0.2.2", "192.0.2.3"]
    assert serial(named, zone) == before + 1                  # one UPDATE, one serial
    # A current value that is not there: 404, and nothing is added.
    status, answer = call(bindcar, "PUT", zone, {"name": "w", "type": "A",
                                                 "currentValue": "192.0.2.9",
                                                 "newValue": "192.0.2.4"})
    assert status == 404 and answer["field"] == "currentValue"
    assert "nothing changed" in answer["error"]
    assert dig(named, f"w.{zone}") == ["192.0.2.2", "192.0.2.3"]
    # The same value with a new TTL.
    status, _ = call(bindcar, "PUT", zone, {"name": "w", "type": "A", "ttl": 120,
                                            "currentValue": "192.0.2.2",
                                            "newValue": "192.0.2.2"})
    assert status == 200
    assert {r["ttl"] for r in listing(bindcar, zone, "?name=w")["records"]} == {120}


def test_put_of_an_mx_takes_priority_for_both_values(bindcar, named, zone):
    call(bindcar, "POST", zone, {"name": "@", "type": "MX", "value": "a.example.net.",
                                 "priority": 5})
    status, answer = call(bindcar, "PUT", zone, {"name": "@", "type": "MX", "priority": 5,
                                                 "currentValue": "a.example.net.",
                                                 "newValue": "b.example.net."})
    assert status == 200, answer
    assert dig(named, zone, "MX") == ["5 b.example.net."]


def test_put_replaces_the_only_apex_ns(bindcar, named, zone):
    """named never lets the apex NS set go empty; the new value is added first."""
    status, answer = call(bindcar, "PUT", zone, {"name": "@", "type": "NS",
                                                 "currentValue": f"ns1.{zone}.",
                                                 "newValue": "ns.example.net."})
    assert status == 200, answer
    assert dig(named, zone, "NS") == ["ns.example.net."]


def test_delete_a_value_then_the_record_set(bindcar, named, zone):
    for value in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        call(bindcar, "POST", zone, {"name": "d", "type": "A", "value": value})
    status, answer = call(bindcar, "DELETE", zone, {"name": "d", "type": "A",
                                                    "value": "192.0.2.1"})
    assert status == 200 and answer["message"] == f"Record removed from zone {zone}"
    assert answer["details"]["record"] == {"name": "d", "type": "A", "value": "192.0.2.1"}
    assert dig(named, f"d.{zone}") == ["192.0.2.2", "192.0.2.3"]
    status, answer = call(bindcar, "DELETE", zone, {"name": f"d.{zone}.", "type": "A"})
    assert status == 200 and answer["details"]["record"]["value"] is None
    assert dig(named, f"d.{zone}") == []
    # Not there (any more): 404, named's zone unchanged.
    before = serial(named, zone)
    for body in ({"name": "d", "type": "A"}, {"name": "d", "type": "A", "value": "192.0.2.2"}):
        status, answer = call(bindcar, "DELETE", zone, body)
        assert status == 404 and "not found" in answer["error"], answer
    assert serial(named, zone) == before
    # The last apex NS: named would ignore the delete, so bindcar says so.
    status, answer = call(bindcar, "DELETE", zone, {"name": "@", "type": "NS",
                                                    "value": f"ns1.{zone}."})
    assert status == 409 and "last NS" in answer["error"]
    status, answer = call(bindcar, "DELETE", zone, {"name": "@", "type": "NS"})
    assert status == 400 and "apex NS" in answer["error"]


def test_serial_rises_with_every_change(bindcar, named, zone):
    serials = [serial(named, zone)]
    for body in ({"name": "s", "type": "A", "value": "192.0.2.1"},
                 {"name": "s", "type": "TXT", "value": "x"}):
        assert call(bindcar, "POST", zone, body)[0] == 201
        serials.append(serial(named, zone))
    call(bindcar, "DELETE", zone, {"name": "s", "type": "TXT"})
    serials.append(serial(named, zone))
    assert serials == sorted(set(serials)) and len(serials) == 4
    assert listing(bindcar, zone)["serial"] == serials[-1]


# ------------------------------------------------------------------ listing

def test_listing_filters_and_leaves_soa_out(bindcar, zone):
    call(bindcar, "POST", zone, {"name": "www", "type": "AAAA", "value": "2001:db8::10"})
    whole = listing(bindcar, zone)
    assert whole["zone"] == zone and isinstance(whole["serial"], int)
    assert {"name": "www", "type": "A", "value": "192.0.2.10", "ttl": 300} in whole["records"]
    assert all(r["type"] != "SOA" for r in whole["records"])
    assert {r["type"] for r in listing(bindcar, zone, "?name=www")["records"]} == {"A", "AAAA"}
    assert listing(bindcar, zone, f"?name=www.{zone}.&type=aaaa")["records"] == [
        {"name": "www", "type": "AAAA", "value": "2001:db8::10", "ttl": 3600}]
    soa = listing(bindcar, zone, "?all=true&type=SOA")["records"]
    assert len(soa) == 1 and soa[0]["name"] == "@"
    assert listing(bindcar, zone, "?name=nothing")["records"] == []
    for query, field in (("?name=www.elsewhere.", "name"), ("?type=BOGUS", "type"),
                         ("?all=yes", "all"), ("?colour=red", "colour"),
                         ("?type=A&type=MX", "type"), ("?name=%ff", "query")):
        status, answer = call(bindcar, "GET", zone, query=query)
        assert status == 400 and answer["field"] == field, (query, answer)


def test_a_listing_fed_back_into_a_create_makes_the_same_zone(bindcar, named, zone):
    for body, _, _ in EVERY_TYPE:
        assert call(bindcar, "POST", zone, body)[0] == 201
    call(bindcar, "POST", zone, {"name": "*.wild", "type": "TXT", "value": '"a" "b"'})
    before = listing(bindcar, zone)
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    again = zone_body(zone, key=KEY, records=before["records"])
    status, answer, _ = bindcar.request("POST", "/api/v1/zones", again)
    assert status == 201, answer
    after = listing(bindcar, zone)
    assert sorted(map(str, after["records"])) == sorted(map(str, before["records"]))


def test_listing_errors(bindcar, named, unique, zone):
    status, answer = call(bindcar, "GET", f"nothere-{unique}.example")
    assert status == 404
    # A zone whose allow-transfer leaves bindcar's key out (set by hand): 409 that says so.
    client = named.client()
    path = os.path.join(bindcar.zone_dir, f"{zone}.zone")
    client.call(f'modzone {zone} {{ type primary; file "{path}"; '
                f'allow-update {{ key "{KEY}"; }}; allow-transfer {{ none; }}; }};')
    status, answer = call(bindcar, "GET", zone)
    assert status == 409 and "allow-transfer" in answer["error"] and KEY in answer["error"]
    # Any PATCH of the zone puts the key back in its allow-transfer.
    status, answer, _ = bindcar.request("PATCH", f"/api/v1/zones/{zone}",
                                        {"allowTransfer": []})
    assert status == 200, answer
    assert call(bindcar, "GET", zone)[0] == 200
    # Others still may not transfer it.
    assert named.dig(zone, "AXFR")[1] == []


# ------------------------------------------------------------------ batches

def test_patch_applies_every_change_in_one_update(bindcar, named, zone):
    call(bindcar, "POST", zone, {"name": "old", "type": "TXT", "value": "bye"})
    before = serial(named, zone)
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "www", "type": "A", "ttl": 60, "changetype": "REPLACE",
         "records": ["192.0.2.1", "192.0.2.2"]},
        {"name": "old", "type": "TXT", "changetype": "DELETE"},
        {"name": "@", "type": "NS", "changetype": "REPLACE",
         "records": ["ns.example.net.", f"ns1.{zone}."]},
        {"name": "mx", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.25"]},
        {"name": "@", "type": "MX", "changetype": "replace", "records": ["10 mx"]}]})
    assert status == 200, answer
    assert answer["message"] == f"Records changed in zone {zone}"
    assert dig(named, f"www.{zone}") == ["192.0.2.1", "192.0.2.2"]
    assert dig(named, f"old.{zone}", "TXT") == []
    assert dig(named, zone, "NS") == ["ns.example.net.", f"ns1.{zone}."]
    assert dig(named, zone, "MX") == [f"10 mx.{zone}."]
    assert serial(named, zone) == before + 1


def test_a_batch_named_refuses_midway_changes_nothing(bindcar, named, zone):
    before = serial(named, zone)
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "www", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.99"]},
        {"name": "t", "type": "TXT", "changetype": "REPLACE", "records": ["kept out"]},
        {"name": "@", "type": "MX", "changetype": "REPLACE", "records": ["10 nomail"]},
        {"name": "u", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.98"]}]})
    assert status == 400 and answer["field"] == "rrsets[2].records[0]", answer
    assert "no A or AAAA" in answer["error"]
    assert dig(named, f"www.{zone}") == ["192.0.2.10"]
    assert dig(named, f"t.{zone}", "TXT") == [] and dig(named, f"u.{zone}") == []
    assert serial(named, zone) == before


def test_an_invalid_change_in_a_batch_sends_nothing(bindcar, named, zone):
    before = serial(named, zone)
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "ok", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.1"]},
        {"name": "bad", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.300"]}]})
    assert status == 400 and answer["field"] == "rrsets[1].records[0]"
    assert dig(named, f"ok.{zone}") == [] and serial(named, zone) == before


BAD_BATCHES = [
    ({}, "rrsets"),
    ({"rrsets": []}, "rrsets"),
    ({"rrsets": {}}, "rrsets"),
    ({"rrsets": [{"name": "a", "type": "A", "changetype": "UPSERT", "records": []}]},
     "rrsets[0].changetype"),
    ({"rrsets": [{"name": "a", "type": "A", "changetype": "REPLACE"}]}, "rrsets[0].records"),
    ({"rrsets": [{"name": "a", "type": "A", "changetype": "DELETE", "records": ["1.2.3.4"]}]},
     "rrsets[0].records"),
    ({"rrsets": [{"name": "a", "type": "A", "changetype": "DELETE"},
                 {"name": "a.{z}.", "type": "a", "changetype": "DELETE"}]}, "rrsets[1]"),
    ({"rrsets": [{"name": "a", "type": "A", "changetype": "REPLACE", "records": ["1.2.3.4"]},
                 {"name": "a", "type": "CNAME", "changetype": "REPLACE", "records": ["b"]}]},
     "rrsets[1].name"),
    ({"rrsets": [{"name": "c", "type": "CNAME", "changetype": "REPLACE",
                  "records": ["b", "d"]}]}, "rrsets[0].records"),
    ({"rrsets": [{"name": "@", "type": "NS", "changetype": "DELETE"}]},
     "rrsets[0].changetype"),
    ({"rrsets": [{"name": "@", "type": "NS", "changetype": "REPLACE", "records": []}]},
     "rrsets[0].changetype"),
    ({"rrsets": [{"name": "x.other.", "type": "A", "changetype": "DELETE"}]}, "rrsets[0].name"),
    ({"rrsets": [{"name": "a", "type": "A", "changetype": "DELETE", "colour": "red"}]},
     "rrsets[0].colour"),
]


@pytest.mark.parametrize("body, field", BAD_BATCHES, ids=range(len(BAD_BATCHES)))
def test_bad_batches_are_refused_naming_the_field(bindcar, zone, body, field):
    if body.get("rrsets") and isinstance(body["rrsets"], list):
        for change in body["rrsets"]:
            change["name"] = change["name"].format(z=zone)
    status, answer = call(bindcar, "PATCH", zone, body)
    assert status == 400 and answer["field"] == field, answer


def test_a_batch_too_big_for_one_message_is_413(bindcar, zone):
    big = ["x" * 250] * 200
    rrsets = [{"name": f"n{i}", "type": "TXT", "changetype": "REPLACE",
               "records": [f"{j} {v}" for j, v in enumerate(big)]} for i in range(3)]
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": rrsets})
    assert status == 413 and "split" in answer["error"]


# ------------------------------------------------------------------ what named refuses

def test_cname_and_other_data_never_meet(bindcar, named, zone):
    status, answer = call(bindcar, "POST", zone, {"name": "www", "type": "CNAME",
                                                  "value": "elsewhere.example.net."})
    assert status == 409 and "www" in answer["error"] and answer["field"] == "name"
    assert call(bindcar, "POST", zone, {"name": "c", "type": "CNAME", "value": "www"})[0] == 201
    # The same CNAME again is done already; another target or other data is a conflict.
    assert call(bindcar, "POST", zone, {"name": "c", "type": "CNAME", "value": "www"})[0] == 201
    status, answer = call(bindcar, "POST", zone, {"name": "c", "type": "CNAME", "value": "x"})
    assert status == 409 and "PUT" in answer["error"]
    status, answer = call(bindcar, "POST", zone, {"name": "c", "type": "TXT", "value": "x"})
    assert status == 409 and "CNAME" in answer["error"]
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "c", "type": "TXT", "changetype": "REPLACE", "records": ["x"]}]})
    assert status == 409
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "www", "type": "CNAME", "changetype": "REPLACE", "records": ["c"]}]})
    assert status == 409 and answer["field"] == "rrsets[0].name"
    # A PATCH that removes the other data first may set the CNAME.
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "c", "type": "CNAME", "changetype": "DELETE"},
        {"name": "c", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.5"]},
        {"name": "www", "type": "A", "changetype": "DELETE"},
        {"name": "www", "type": "CNAME", "changetype": "REPLACE", "records": ["c"]}]})
    assert status == 200, answer
    assert dig(named, f"www.{zone}", "CNAME") == [f"c.{zone}."]
    assert dig(named, f"c.{zone}") == ["192.0.2.5"]


def test_an_mx_to_an_address_less_name_inside_the_zone(bindcar, named, zone):
    status, answer = call(bindcar, "POST", zone, {"name": "@", "type": "MX", "value": "mx",
                                                  "priority": 10})
    assert status == 400 and answer["field"] == "value" and f"mx.{zone}." in answer["error"]
    assert call(bindcar, "POST", zone, {"name": "mx", "type": "A", "value": "192.0.2.25"})[0] \
        == 201
    assert call(bindcar, "POST", zone, {"name": "@", "type": "MX", "value": "mx",
                                        "priority": 10})[0] == 201


def test_zones_that_take_no_updates(bindcar, named, unique):
    plain = f"{unique}.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(plain))[0] == 201
    add = {"name": "x", "type": "A", "value": "192.0.2.1"}
    status, answer = call(bindcar, "POST", plain, add)
    assert status == 400 and "updateKeyName" in answer["error"] and KEY in answer["error"]
    # named.conf's static.test has no allow-update either.
    assert call(bindcar, "POST", "static.test", add)[0] == 400
    # PATCH allowUpdate with the key enables it.
    status, answer, _ = bindcar.request("PATCH", f"/api/v1/zones/{plain}",
                                        {"allowUpdate": [f"key {KEY}"]})
    assert status == 200, answer
    assert call(bindcar, "POST", plain, add)[0] == 201
    assert dig(named, f"x.{plain}") == ["192.0.2.1"]
    # A zone named does not serve: 404; a secondary: 400.
    assert call(bindcar, "POST", f"nothere-{unique}.example", add)[0] == 404
    secondary = f"{unique}-sec.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(secondary, "secondary"))[0] == 201
    status, answer = call(bindcar, "POST", secondary, add)
    assert status == 400 and "secondary" in answer["error"], answer


def test_a_frozen_zone_says_thaw_it_first(bindcar, zone):
    assert bindcar.request("POST", f"/api/v1/zones/{zone}/freeze")[0] == 200
    status, answer = call(bindcar, "POST", zone, {"name": "f", "type": "A", "value": "192.0.2.1"})
    assert status == 409 and "thaw it first" in answer["error"]
    assert bindcar.request("POST", f"/api/v1/zones/{zone}/thaw")[0] == 200
    assert call(bindcar, "POST", zone, {"name": "f", "type": "A", "value": "192.0.2.1"})[0] == 201


BAD_RECORDS = [
    ({"type": "A", "value": "192.0.2.1"}, "name"),
    ({"name": "a", "value": "192.0.2.1"}, "type"),
    ({"name": "a", "type": "A"}, "value"),
    ({"name": "a", "type": "SOA", "value": "x"}, "type"),
    ({"name": "a", "type": "A", "value": "192.0.2.256"}, "value"),
    ({"name": "a", "type": "A", "value": "2001:db8::1"}, "value"),
    ({"name": "a", "type": "A", "value": "192.0.2.1", "ttl": -1}, "ttl"),
    ({"name": "a", "type": "A", "value": "192.0.2.1", "ttl": "60"}, "ttl"),
    ({"name": "a", "type": "A", "value": "192.0.2.1", "priority": 1}, "priority"),
    ({"name": "a.elsewhere.example.", "type": "A", "value": "192.0.2.1"}, "name"),
    ({"name": "a b", "type": "A", "value": "192.0.2.1"}, "name"),
    ({"name": "a_b", "type": "A", "value": "192.0.2.1"}, "name"),
    ({"name": "@", "type": "CNAME", "value": "x"}, "name"),
    ({"name": "t", "type": "TXT", "value": "\ud800"}, "value"),
    ({"name": "t", "type": "TXT", "value": "x\ny"}, "value"),
    ({"name": "m", "type": "MX", "value": "mail.example.net."}, "value"),
    ({"name": "m", "type": "MX", "value": "mail_x.example.net.", "priority": 1}, "value"),
    ({"name": "s", "type": "SRV", "value": "5 70000 t.example.net.", "priority": 1}, "value"),
    ({"name": "c", "type": "CAA", "value": "0 bad-tag x"}, "value"),
    ({"name": "a", "type": "A", "value": "192.0.2.1", "colour": "red"}, "colour"),
    ({"name": "a", "type": "A", "value": "192.0.2.1\n$INCLUDE /etc/passwd"}, "value"),
]


@pytest.mark.parametrize("body, field", BAD_RECORDS, ids=range(len(BAD_RECORDS)))
def test_bad_records_are_refused_naming_the_field(bindcar, zone, body, field):
    status, answer = call(bindcar, "POST", zone, body)
    assert status == 400 and answer["field"] == field, answer


def test_bad_put_and_delete_bodies(bindcar, zone):
    cases = [("PUT", {"name": "a", "type": "A", "currentValue": "192.0.2.1"}, "newValue"),
             ("PUT", {"name": "a", "type": "A", "currentValue": "x", "newValue": "192.0.2.1"},
              "currentValue"),
             ("DELETE", {"name": "a"}, "type"),
             ("DELETE", {"name": "a", "type": "A", "priority": 1}, "priority"),
             ("DELETE", [], "body")]
    for method, body, field in cases:
        status, answer = call(bindcar, method, zone, body)
        assert status == 400 and answer["field"] == field, (method, body, answer)
    status, answer, _ = bindcar.request("POST", records_path(zone), b"{",
                                        headers={"Content-Type": "application/json"})
    assert status == 400 and answer["field"] == "body"


# ------------------------------------------------------------------ the update key

def test_a_key_named_does_not_know_is_503_naming_it(make_bindcar, named, unique):
    server = make_bindcar(named, NSUPDATE_KEY_NAME="no-such-key")
    name = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(name, key=KEY))[0] == 201
    status, answer, _ = server.request("POST", records_path(name),
                                       {"name": "a", "type": "A", "value": "192.0.2.1"})
    assert status == 503 and "no-such-key" in answer["error"]
    assert "named.conf" in answer["error"]


def test_a_wrong_secret_is_503_without_the_secret(make_bindcar, named, zone):
    wrong = "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdXBkYXRlIGtleQ=="
    server = make_bindcar(named, NSUPDATE_SECRET=wrong)
    status, answer, _ = server.request("POST", records_path(zone),
                                       {"name": "a", "type": "A", "value": "192.0.2.1"})
    assert status == 503 and "BADSIG" in answer["error"] and KEY in answer["error"]
    assert wrong not in str(answer) and wrong not in server.log_text()


def test_named_dns_port_unreachable_is_503(make_bindcar, named, zone):
    server = make_bindcar(named, NSUPDATE_PORT=str(free_port()))
    status, answer, _ = server.request("POST", records_path(zone),
                                       {"name": "a", "type": "A", "value": "192.0.2.1"})
    assert status == 503 and answer["error"] == "named is not reachable on its DNS port"
    assert server.request("GET", records_path(zone))[0] == 503


def test_the_update_key_defaults_to_the_rndc_key_of_rndc_conf(make_bindcar, named, unique):
    """With RNDC_CONF and no NSUPDATE_*, records are signed with rndc.conf's key."""
    server = make_bindcar(named, RNDC_SERVER=None, RNDC_ALGORITHM=None, RNDC_SECRET=None,
                          NSUPDATE_KEY_NAME=None, RNDC_CONF=named.rndc_conf)
    start = next(r for r in server.log_records() if r["message"] == "starting")
    assert start["update_key"] == "rndc-sha256"
    assert start["update_sources"]["key"] == "RNDC key"
    assert start["update_secret"] == "***"
    name = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(name, key="rndc-sha256"))[0] == 201
    status, answer, _ = server.request("POST", records_path(name),
                                       {"name": "a", "type": "A", "value": "192.0.2.1"})
    assert status == 201, answer
    assert dig(named, f"a.{name}") == ["192.0.2.1"]


def test_update_settings_are_checked_at_start(make_bindcar, named, tmp_path):
    for env, words in (({"NSUPDATE_SERVER": "127.0.0.1:53", "NSUPDATE_PORT": "54"},
                        "give the port once"),
                       ({"NSUPDATE_ALGORITHM": "hmac-sha3"}, "NSUPDATE_ALGORITHM"),
                       ({"NSUPDATE_SECRET": "not base64!"}, "base64"),
                       ({"NSUPDATE_SECRET_FILE": str(tmp_path / "absent")},
                        "NSUPDATE_SECRET_FILE")):
        server = make_bindcar(named, start=False, **env)
        server.start(wait=False)
        assert server.proc.wait(20) == 2, env
        assert words in server.log_text(), (env, server.log_text())
    secret = tmp_path / "secret"
    secret.write_text(named.secrets["hmac-sha256"] + "\n")
    server = make_bindcar(named, NSUPDATE_SECRET_FILE=str(secret),
                          NSUPDATE_SERVER=f"127.0.0.1:{named.dns_port}", NSUPDATE_PORT=None)
    start = next(r for r in server.log_records() if r["message"] == "starting")
    assert start["update_sources"]["secret"] == "NSUPDATE_SECRET_FILE"
    assert start["update_server"] == f"127.0.0.1:{named.dns_port}"


# ------------------------------------------------------------------ concurrency, restarts

def test_fifty_threads_adding_records_all_land(bindcar, named, zone):
    results = []

    def add(i):
        results.append(call(bindcar, "POST", zone, {"name": f"h{i}", "type": "A",
                                                    "value": f"192.0.2.{i + 1}"})[0])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [201] * 50
    listed = {r["name"] for r in listing(bindcar, zone, "?type=A")["records"]}
    assert {f"h{i}" for i in range(50)} <= listed
    assert dig(named, f"h49.{zone}") == ["192.0.2.50"]


def test_a_zone_deleted_while_records_are_added_ends_clean(bindcar, named, zone):
    statuses, stop = [], threading.Event()

    def add(worker):
        for i in range(200):
            if stop.is_set():
                return
            statuses.append(call(bindcar, "POST", zone, {"name": f"w{worker}-{i}",
                                                         "type": "A", "value": "192.0.2.1"})[0])

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline_count = 0
    while len(statuses) < 20 and deadline_count < 500:
        threading.Event().wait(0.01)
        deadline_count += 1
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    after = len(statuses)
    for _ in range(300):                # a few more adds after the delete, then stop
        if len(statuses) >= after + 8:
            break
        threading.Event().wait(0.01)
    stop.set()
    for t in threads:
        t.join(60)
    assert set(statuses) <= {201, 404} and statuses[-1] == 404, statuses
    assert not [f for f in files_of(bindcar.zone_dir) if f.startswith(zone + ".")]
    assert named.dig(zone, "SOA")[0] == "REFUSED"
    assert call(bindcar, "GET", zone)[0] == 404


def test_records_survive_a_restart_of_named(make_bindcar, own_named, unique):
    server = make_bindcar(own_named)
    name = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(name, key=KEY))[0] == 201
    assert call(server, "POST", name, {"name": "kept", "type": "TXT", "value": "journal"})[0] \
        == 201
    own_named.restart()
    assert dig(own_named, f"kept.{name}", "TXT") == ['"journal"']
    listed = listing(server, name, "?name=kept")["records"]
    assert listed == [{"name": "kept", "type": "TXT", "value": '"journal"', "ttl": 3600}]
    # bindcar's kept-open DNS connection was closed by the restart; the next change works.
    assert call(server, "POST", name, {"name": "more", "type": "A", "value": "192.0.2.1"})[0] \
        == 201


def test_records_added_by_nsupdate_show_in_the_listing(bindcar, named, zone):
    result = nsupdate(named, zone, f"update add other.{zone}. 60 IN HINFO \"pc\" \"linux\"")
    assert result.returncode == 0, result.stderr
    listed = listing(bindcar, zone, "?name=other")["records"]
    assert listed == [{"name": "other", "type": "HINFO", "value": "\\# 9 027063056C696E7578",
                       "ttl": 60}]
    assert listing(bindcar, zone, "?type=hinfo")["records"] == listed


# ------------------------------------------------------------------ metrics and the log

def test_metrics_and_log_lines_of_record_changes(bindcar, zone):
    assert call(bindcar, "POST", zone, {"name": "m", "type": "A", "value": "192.0.2.1"})[0] == 201
    assert call(bindcar, "DELETE", zone, {"name": "m", "type": "A", "value": "192.0.2.9"})[0] \
        == 404
    text = bindcar.request("GET", "/metrics", token=None)[1]
    assert 'bindcar_record_operations_total{operation="add",result="success"}' in text
    assert 'bindcar_record_operations_total{operation="remove",result="failure"}' in text
    assert 'bindcar_zone_operations_total{operation="record_add",result="success"}' in text
    assert 'bindcar_dns_update_duration_seconds_bucket{operation="add",le="+Inf"}' in text
    line = next(r for r in bindcar.log_records()
                if r["message"] == "record added" and r.get("zone") == zone)
    assert line["record"] == f"m.{zone}. A 192.0.2.1"
    assert line["identity"] == "token" and line["client"] == "127.0.0.1"


def test_the_client_alone_speaks_dns_proto(named, zone):
    """The same zone through dns_proto directly: bindcar's changes are plain UPDATEs."""
    client = dns_proto.DnsClient("127.0.0.1", named.dns_port, KEY, "hmac-sha256",
                                 named.secrets["hmac-sha256"])
    try:
        names = {r.name for r in client.axfr(zone)}
    finally:
        client.close()
    assert f"www.{zone}." in names


def test_a_record_set_past_named_limit_is_409_not_a_server_fault(bindcar, named, zone):
    """named 9.18 holds at most 100 records of one type at one name; past it, SERVFAIL."""
    values = [f"192.0.2.{i}" for i in range(1, 101)]
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "many", "type": "A", "changetype": "REPLACE", "records": values}]})
    assert status == 200, answer
    status, answer = call(bindcar, "POST", zone, {"name": "many", "type": "A",
                                                  "value": "192.0.2.200"})
    assert status == 409 and "101 records" in answer["error"] and answer["field"] == "value"
    assert len(dig(named, f"many.{zone}")) == 100


# ------------------------------------------------------------------ from the adversarial pass

def test_value_changes_on_zones_named_cannot_serve_as_asked(bindcar, named, unique):
    put = {"name": "www", "type": "A", "currentValue": "192.0.2.1", "newValue": "192.0.2.2"}
    drop = {"name": "www", "type": "A", "value": "192.0.2.1"}
    batch = {"rrsets": [{"name": "@", "type": "NS", "changetype": "REPLACE",
                         "records": ["ns.example.net."]}]}
    absent = f"nothere-{unique}.example"
    for method, body in (("PUT", put), ("DELETE", drop), ("PATCH", batch)):
        status, answer = call(bindcar, method, absent, body)
        assert status == 404, (method, answer)
    secondary = f"{unique}-sec.example"                     # never loads: 409, not a 500
    assert bindcar.request("POST", "/api/v1/zones", zone_body(secondary, "secondary"))[0] == 201
    for method, body in (("PUT", put), ("DELETE", drop), ("PATCH", batch), ("GET", None)):
        status, answer = call(bindcar, method, secondary, body)
        assert status == 409 and "not loaded" in answer["error"], (method, answer)
    # A zone whose allow-query leaves bindcar out: reading the record set is refused.
    closed = f"{unique}-closed.example"
    path = os.path.join(named.dir, f"{closed}.zone")
    with open(path, "w") as f:
        f.write(f"$TTL 300\n@ SOA ns1.{closed}. admin.{closed}. 1 3600 600 604800 300\n"
                "@ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.1\n")
    named.client().call(f'addzone {closed} {{ type primary; file "{path}"; allow-query '
                        f'{{ none; }}; allow-update {{ key "{KEY}"; }}; }};')
    try:
        status, answer = call(bindcar, "PUT", closed, put)
        assert status == 409 and "allow-query" in answer["error"], answer
    finally:
        named.client().call(f"delzone {closed}")


def test_an_empty_list_is_not_an_absent_value(bindcar, named, zone):
    call(bindcar, "POST", zone, {"name": "two", "type": "A", "value": "192.0.2.1"})
    call(bindcar, "POST", zone, {"name": "two", "type": "A", "value": "192.0.2.2"})
    for value in ([], {}):
        status, answer = call(bindcar, "DELETE", zone, {"name": "two", "type": "A",
                                                        "value": value})
        assert status == 400 and answer["field"] == "value", answer
    assert dig(named, f"two.{zone}") == ["192.0.2.1", "192.0.2.2"]


def test_glue_below_a_delegation_changes_by_value(bindcar, named, zone):
    """A query of glue gets a referral, not the record: bindcar reads the zone itself."""
    assert call(bindcar, "POST", zone, {"name": "d", "type": "NS", "value": "ns.d"})[0] == 201
    assert call(bindcar, "POST", zone, {"name": "ns.d", "type": "A",
                                        "value": "192.0.2.53"})[0] == 201
    status, answer = call(bindcar, "PUT", zone, {"name": "ns.d", "type": "A",
                                                 "currentValue": "192.0.2.53",
                                                 "newValue": "192.0.2.54"})
    assert status == 200, answer
    assert listing(bindcar, zone, "?name=ns.d")["records"][0]["value"] == "192.0.2.54"
    status, answer = call(bindcar, "DELETE", zone, {"name": "ns.d", "type": "A",
                                                    "value": "192.0.2.54"})
    assert status == 200, answer
    assert listing(bindcar, zone, "?name=ns.d")["records"] == []


def test_an_mx_to_a_cname_is_refused_naming_the_field(bindcar, zone):
    assert call(bindcar, "POST", zone, {"name": "al", "type": "CNAME", "value": "www"})[0] == 201
    status, answer = call(bindcar, "POST", zone, {"name": "@", "type": "MX", "value": "10 al"})
    assert status == 400 and answer["field"] == "value" and "CNAME" in answer["error"]


def test_the_same_cname_with_a_new_ttl_takes_it(bindcar, named, zone):
    body = {"name": "c", "type": "CNAME", "value": "www", "ttl": 100}
    assert call(bindcar, "POST", zone, body)[0] == 201
    assert call(bindcar, "POST", zone, dict(body, ttl=200))[0] == 201
    assert listing(bindcar, zone, "?name=c")["records"][0]["ttl"] == 200


def test_a_wildcard_does_not_stop_a_cname_beside_it(bindcar, named, zone):
    assert call(bindcar, "POST", zone, {"name": "*", "type": "TXT", "value": "w"})[0] == 201
    status, answer = call(bindcar, "PATCH", zone, {"rrsets": [
        {"name": "foo", "type": "CNAME", "changetype": "REPLACE", "records": ["www"]}]})
    assert status == 200, answer
    assert dig(named, f"foo.{zone}", "CNAME") == [f"www.{zone}."]


def test_odd_query_strings_and_numbers(bindcar, zone):
    for query, field in (("?name=", "name"), ("?type=", "type"), ("?type=TYPE99999", "type"),
                         ("?" + "&".join(f"x{i}=1" for i in range(20)), "query")):
        status, answer = call(bindcar, "GET", zone, query=query)
        assert status == 400 and answer["field"] == field, (query, answer)
    status, answer, _ = bindcar.request(
        "POST", records_path(zone), b'{"name": "a", "type": "A", "value": "192.0.2.1", "ttl": '
        + b"9" * 5000 + b"}", headers={"Content-Type": "application/json"})
    assert status == 400 and answer["field"] == "ttl" and "sys." not in answer["error"]


def test_every_change_logs_its_record_and_caller(bindcar, zone):
    call(bindcar, "POST", zone, {"name": "l", "type": "A", "value": "192.0.2.1"})
    call(bindcar, "PUT", zone, {"name": "l", "type": "A", "currentValue": "192.0.2.1",
                                "newValue": "192.0.2.2"})
    call(bindcar, "PATCH", zone, {"rrsets": [{"name": "l", "type": "TXT",
                                              "changetype": "REPLACE", "records": ["t"]}]})
    call(bindcar, "DELETE", zone, {"name": "l", "type": "A"})
    lines = {r["message"]: r for r in bindcar.log_records() if r.get("zone") == zone}
    assert lines["record updated"]["record"] == f"l.{zone}. A 192.0.2.1"
    assert lines["record updated"]["new"] == "192.0.2.2"
    assert lines["records changed"]["rrsets"] == [f"l.{zone}. TXT REPLACE"]
    assert lines["record removed"]["record"] == f"l.{zone}. A"
    for message in ("record updated", "records changed", "record removed"):
        assert lines[message]["identity"] == "token" and lines[message]["client"] == "127.0.0.1"
