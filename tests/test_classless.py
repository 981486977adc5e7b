"""RFC 2317 classless reverse zones: ``0/26.2.0.192.in-addr.arpa``, the form most ISPs
delegate, created, changed and deleted through bindcar against a real named; its file
name stays a file in the zone directory."""

import os
import urllib.parse

from test_bindcar import files_of
from test_records import KEY, dig

CLASSLESS = "0/26.2.0.192.in-addr.arpa"


def zone_body(name):
    return {"zoneName": name, "zoneType": "primary", "updateKeyName": KEY,
            "zoneConfig": {"ttl": 300, "soa": {"primaryNs": "ns1.example.net.",
                                               "adminEmail": "admin@example.net"},
                           "nameServers": ["ns1.example.net."],
                           "records": [{"name": "1", "type": "PTR",
                                        "value": "host1.example.net."}]}}


def test_a_classless_reverse_zone_and_its_parent_s_delegation(bindcar, named):
    path = "/api/v1/zones/" + urllib.parse.quote(CLASSLESS, safe="")
    status, body, _ = bindcar.request("POST", "/api/v1/zones", zone_body(CLASSLESS))
    assert status == 201, body
    assert dig(named, f"1.{CLASSLESS}", "PTR") == ["host1.example.net."]
    files = [f for f in files_of(bindcar.zone_dir) if f.startswith("0_26.2.0.192")]
    assert len(files) == 1 and "/" not in files[0] and "+" in files[0]
    assert os.path.isfile(os.path.join(bindcar.zone_dir, files[0]))
    status, body, _ = bindcar.request("GET", path)
    assert status == 200 and body["name"] == CLASSLESS
    status, body, _ = bindcar.request("POST", path + "/records", {
        "name": "2", "type": "PTR", "value": "host2.example.net."})
    assert status == 201, body
    assert dig(named, f"2.{CLASSLESS}", "PTR") == ["host2.example.net."]
    # The parent's side: the delegation to the classless zone, and a CNAME per address.
    parent = "2.0.192.in-addr.arpa"
    assert bindcar.request("POST", "/api/v1/zones", {**zone_body(parent), "zoneName": parent}
                           )[0] == 201
    parent_path = f"/api/v1/zones/{parent}/records"
    status, body, _ = bindcar.request("POST", parent_path, {
        "name": "0/26", "type": "NS", "value": "ns1.example.net."})
    assert status == 201, body
    status, body, _ = bindcar.request("POST", parent_path, {
        "name": "5", "type": "CNAME", "value": f"5.{CLASSLESS}."})
    assert status == 201, body
    assert dig(named, f"5.{parent}", "CNAME") == [f"5.{CLASSLESS}."]
    listed = bindcar.request("GET", parent_path + "?name=0/26")[1]["records"]
    assert listed == [{"name": "0/26", "type": "NS", "value": "ns1.example.net.", "ttl": 3600}]
    query = "?suffix=" + urllib.parse.quote(CLASSLESS, safe="")
    assert bindcar.request("GET", "/api/v1/zones" + query)[1]["zones"] == [CLASSLESS]
    for name in (CLASSLESS, parent):
        status, body, _ = bindcar.request("DELETE", "/api/v1/zones/"
                                          + urllib.parse.quote(name, safe=""))
        assert status == 200, body
    assert not [f for f in files_of(bindcar.zone_dir) if f.startswith("0_26.2.0.192")]


def test_a_classless_zone_is_listed_again_after_a_restart(named, make_bindcar):
    server = make_bindcar(named)
    name = "64/26.2.0.192.in-addr.arpa"
    assert server.request("POST", "/api/v1/zones", zone_body(name))[0] == 201
    server.stop()
    server.start()
    status, body, _ = server.request("GET", "/api/v1/zones")
    assert name in body["zones"]
    path = "/api/v1/zones/" + urllib.parse.quote(name, safe="")
    assert server.request("DELETE", path)[0] == 200


def test_slashes_only_where_rfc_2317_puts_them(bindcar):
    for name in ("/26.2.0.192.in-addr.arpa", "0/.2.0.192.in-addr.arpa",
                 "0//26.2.0.192.in-addr.arpa"):
        status, body, _ = bindcar.request("POST", "/api/v1/zones", zone_body(name))
        assert status == 400 and body["field"] == "zoneName", name
