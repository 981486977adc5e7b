"""Conditional changes: ETags are SOA serials, and If-Match becomes an UPDATE
prerequisite on the zone's SOA, so that named itself refuses a change to a zone that
changed since it was read (412, nothing changed).  Against a real named; dig checks."""

import pytest

from test_bindcar import nsupdate, zone_body
from test_catalog import poll
from test_records import dig, records_path, serial, zone  # noqa: F401 (fixture)


def etag_of(response):
    return response.getheader("ETag")


def send(server, method, zone, body, **headers):
    status, answer, response = server.request(method, records_path(zone), body,
                                              headers=headers)
    return status, answer, etag_of(response)


def test_every_read_of_a_zone_carries_its_serial_as_etag(bindcar, named, zone):
    now = f'"{serial(named, zone)}"'
    for path in (f"/api/v1/zones/{zone}", f"/api/v1/zones/{zone}/status",
                 records_path(zone), records_path(zone) + "?name=www"):
        status, _, response = bindcar.request("GET", path)
        assert status == 200 and etag_of(response) == now, path


def test_a_change_answers_the_new_etag(bindcar, named, zone):
    before = serial(named, zone)
    status, _, etag = send(bindcar, "POST", zone, {"name": "a", "type": "A",
                                                   "value": "192.0.2.1"})
    assert status == 201 and etag == f'"{serial(named, zone)}"' != f'"{before}"'
    for method, body in (
            ("PUT", {"name": "a", "type": "A", "currentValue": "192.0.2.1",
                     "newValue": "192.0.2.2"}),
            ("PATCH", {"rrsets": [{"name": "a", "type": "A", "changetype": "REPLACE",
                                   "records": ["192.0.2.3"]}]}),
            ("DELETE", {"name": "a", "type": "A"})):
        status, answer, etag = send(bindcar, method, zone, body)
        assert status == 200 and etag == f'"{serial(named, zone)}"', answer


def test_if_match_at_the_current_serial_changes_the_zone(bindcar, named, zone):
    status, _, response = bindcar.request("GET", records_path(zone))
    status, answer, etag = send(bindcar, "POST", zone, {"name": "m", "type": "A",
                                                        "value": "192.0.2.1"},
                                **{"If-Match": etag_of(response)})
    assert status == 201, answer
    status, answer, etag = send(bindcar, "PUT", zone, {       # its answer's ETag, chained
        "name": "m", "type": "A", "currentValue": "192.0.2.1", "newValue": "192.0.2.2"},
        **{"If-Match": etag})
    assert status == 200, answer
    assert dig(named, f"m.{zone}") == ["192.0.2.2"]


def test_two_writers_from_one_read_the_second_gets_412(bindcar, named, zone):
    """PowerDNS's #6247: two clients read, change and write back; here the second
    is refused by named's own prerequisite check, and nothing of it is applied."""
    _, _, response = bindcar.request("GET", f"/api/v1/zones/{zone}")
    read = etag_of(response)
    first = send(bindcar, "PATCH", zone, {"rrsets": [{
        "name": "www", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.11"]}]},
        **{"If-Match": read})
    assert first[0] == 200
    status, answer, etag = send(bindcar, "PATCH", zone, {"rrsets": [{
        "name": "www", "type": "A", "changetype": "REPLACE", "records": ["192.0.2.99"]}]},
        **{"If-Match": read})
    assert status == 412 and answer["field"] == "If-Match"
    assert etag == first[2] and answer["details"] == {"serial": serial(named, zone)}
    assert dig(named, f"www.{zone}") == ["192.0.2.11"]


def test_another_writer_between_two_changes_is_caught_by_named(bindcar, named, zone):
    """bindcar keeps the SOA it last read (a change reads nothing first); a change
    made elsewhere since makes named refuse the prerequisite: 412."""
    status, _, etag = send(bindcar, "POST", zone, {"name": "n", "type": "A",
                                                   "value": "192.0.2.1"})
    assert status == 201
    assert nsupdate(named, zone, f"update add other.{zone}. 300 A 192.0.2.7").returncode == 0
    status, answer, now = send(bindcar, "DELETE", zone, {"name": "n", "type": "A"},
                               **{"If-Match": etag})
    assert status == 412 and now == f'"{serial(named, zone)}"', answer
    assert dig(named, f"n.{zone}") == ["192.0.2.1"]


def test_if_none_match_creates_only_where_nothing_is(bindcar, named, zone):
    body = {"name": "fresh", "type": "TXT", "value": "one"}
    assert send(bindcar, "POST", zone, body, **{"If-None-Match": "*"})[0] == 201
    status, answer, _ = send(bindcar, "POST", zone, {**body, "value": "two"},
                             **{"If-None-Match": "*"})
    assert status == 412 and answer["field"] == "If-None-Match"
    assert dig(named, f"fresh.{zone}", "TXT") == ['"one"']
    assert send(bindcar, "POST", zone, {**body, "value": "two"})[0] == 201   # without it


@pytest.mark.parametrize("header, value", [
    ("If-Match", "2026120601"), ("If-Match", '"x"'), ("If-Match", '"1", nope'),
    ("If-None-Match", '"2026120601"')])
def test_a_malformed_condition_is_a_400_naming_the_header(bindcar, named, zone, header,
                                                          value):
    status, answer, _ = send(bindcar, "POST", zone, {"name": "bad", "type": "A",
                                                     "value": "192.0.2.1"}, **{header: value})
    assert status == 400 and answer["field"] == header
    assert dig(named, f"bad.{zone}") == []


def test_if_match_any_of_several_etags_or_star(bindcar, named, zone):
    now = serial(named, zone)
    status, _, _ = send(bindcar, "POST", zone, {"name": "s", "type": "A",
                                                "value": "192.0.2.1"},
                        **{"If-Match": f'"1", W/"{now}"'})
    assert status == 201
    status, _, _ = send(bindcar, "POST", zone, {"name": "s", "type": "A",
                                                "value": "192.0.2.2"}, **{"If-Match": "*"})
    assert status == 201 and dig(named, f"s.{zone}") == ["192.0.2.1", "192.0.2.2"]


def test_a_zone_patch_takes_if_match(bindcar, named, zone):
    path = f"/api/v1/zones/{zone}"
    stale = f'"{serial(named, zone) - 1}"'
    status, answer, _ = bindcar.request("PATCH", path, {"alsoNotify": ["192.0.2.53"]},
                                        headers={"If-Match": stale})
    assert status == 412 and answer["details"]["serial"] == serial(named, zone)
    now = f'"{serial(named, zone)}"'
    status, answer, response = bindcar.request("PATCH", path, {"alsoNotify": ["192.0.2.53"]},
                                               headers={"If-Match": now})
    assert status == 200 and etag_of(response) == now, answer


def test_several_etags_one_of_which_is_now(bindcar, named, zone):
    """bindcar kept the SOA of the first ETag; the zone has moved on to the second."""
    _, _, response = bindcar.request("GET", records_path(zone))
    old = etag_of(response)
    assert nsupdate(named, zone, f"update add o.{zone}. 300 A 192.0.2.7").returncode == 0
    status, body, _ = send(bindcar, "POST", zone, {"name": "m", "type": "A",
                                                   "value": "192.0.2.1"},
                           **{"If-Match": f'{old}, "{serial(named, zone)}"'})
    assert status == 201, body


def test_an_inline_signed_zone_takes_if_match(bindcar, named, unique):
    """named serves the signed copy (its own serial) while an UPDATE's prerequisites
    see the unsigned zone: the ETag is the unsigned zone's serial, everywhere."""
    zone = f"{unique}-sig.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(
        zone, key="update-key", dnssecPolicy="default", inlineSigning=True))[0] == 201
    poll(lambda: bindcar.request("GET", f"/api/v1/zones/{zone}/dnssec")[1].get("dnskeys"),
         20, "named to sign the zone")
    etags = {etag_of(bindcar.request("GET", path)[2]) for path in (
        f"/api/v1/zones/{zone}", f"/api/v1/zones/{zone}/status", records_path(zone))}
    assert len(etags) == 1, etags
    status, body, etag = send(bindcar, "POST", zone, {"name": "m", "type": "A",
                                                      "value": "192.0.2.1"},
                              **{"If-Match": etags.pop()})
    assert status == 201, body
    status, body, etag = send(bindcar, "PUT", zone, {
        "name": "m", "type": "A", "currentValue": "192.0.2.1", "newValue": "192.0.2.2"},
        **{"If-Match": etag})
    assert status == 200, body
    assert send(bindcar, "DELETE", zone, {"name": "m", "type": "A"},
                **{"If-Match": '"1"'})[0] == 412
    poll(lambda: dig(named, f"m.{zone}") == ["192.0.2.2"], 10, "the signed copy")


def test_a_zone_patch_answers_its_etag_without_if_match(bindcar, named, zone):
    status, _, response = bindcar.request("PATCH", f"/api/v1/zones/{zone}",
                                          {"alsoNotify": []})
    assert status == 200 and etag_of(response) == f'"{serial(named, zone)}"'
