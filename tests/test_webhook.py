"""bindcar as external-dns's webhook provider, driven by a client that behaves as
external-dns's own (tests/externaldns.py), against a real named: two zones, one inside
the other, created through bindcar with the update key; dig checks what named serves."""

import json
import re

import pytest

from conftest import free_port
from externaldns import (MEDIA_TYPE, ExternalDNS, HardError, SoftError, as_sent, endpoint,
                         owned, registry_txt)
from test_bindcar import nsupdate, zone_body

KEY = "update-key"


@pytest.fixture
def webhook(named, make_bindcar, unique):
    """(bindcar with WEBHOOK_ADDRESS, external-dns's client, parent zone, child zone)."""
    port = free_port()
    server = make_bindcar(named, WEBHOOK_ADDRESS=f"127.0.0.1:{port}")
    parent, child = f"{unique}.example", f"sub.{unique}.example"
    for zone in (parent, child):
        status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))
        assert status == 201, body
    return server, ExternalDNS(port), parent, child


def served(named, name, rtype):
    """What named serves for name/rtype, sorted ([] for none)."""
    _, answers = named.dig(name, rtype)
    return sorted(fields[4] for fields in (line.split(None, 4) for line in answers)
                  if fields[3] == rtype)


def listed(client):
    """GET /records as {(dnsName, recordType): (sorted targets, TTL)}; one each."""
    result = {}
    for e in client.records():
        key = (e["dnsName"], e["recordType"])
        assert key not in result, f"{key} listed twice"
        result[key] = (sorted(e["targets"]), e.get("recordTTL"))
    return result


def metric(server, name, **labels):
    status, text, _ = server.request("GET", "/metrics")
    total = 0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line
                                               for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ the protocol

def test_negotiation_offers_the_zones_that_take_the_update_key(webhook, unique):
    server, client, parent, child = webhook
    status, body, _ = server.request("POST", "/api/v1/zones",
                                     zone_body(f"nokey.{unique}.test"))   # no allow-update
    assert status == 201, body
    assert client.negotiate() == {"include": sorted([child, parent])}
    status, _, data = client._request("GET", "/", headers=[("Accept", MEDIA_TYPE)])
    assert status == 200 and data.startswith(b'{"include":')


def test_every_answer_has_the_media_type_and_errors_are_json(webhook):
    server, client, parent, _ = webhook
    for method, path, body, expected in (
            ("GET", "/", None, 200), ("GET", "/records", None, 200),
            ("GET", "/nowhere", None, 404), ("DELETE", "/records", None, 405),
            ("POST", "/records", b"{not json", 400),
            ("POST", "/adjustendpoints", b'{"an": "object"}', 400)):
        status, reply, data = client._request(method, path, body, headers=[
            ("Content-Type", MEDIA_TYPE)] if body else [])
        assert status == expected, (path, data)
        assert reply.getheader("Content-Type") == MEDIA_TYPE
        json.loads(data)
    # 204 carries no body and no Content-Length (RFC 9110)
    status, reply, data = client._request("POST", "/records", b"{}\n",
                                          headers=[("Content-Type", MEDIA_TYPE)])
    assert (status, data, reply.getheader("Content-Length")) == (204, b"", None)


def test_no_web_page_can_reach_it(webhook):
    """No authentication, so: loopback only, a loopback Host only, and a Content-Type
    no form can send."""
    server, client, parent, _ = webhook
    rebound = ExternalDNS(client.port, host="attacker.example")
    with pytest.raises(HardError, match="code 421"):
        rebound.records()
    changes = json.dumps({"create": [endpoint(f"x.{parent}", "A", "192.0.2.1")]}).encode()
    status, _, _ = client._request("POST", "/records", changes,
                                   headers=[("Content-Type", "text/plain")])
    assert status == 415
    assert served(server.named, f"x.{parent}", "A") == []


def test_pre_017_field_names_are_read(webhook):
    """external-dns before 0.17 sent Go's field names and null for empty lists."""
    server, client, parent, _ = webhook
    body = {"Create": [endpoint(f"old.{parent}", "A", "192.0.2.17")], "UpdateOld": None,
            "UpdateNew": None, "Delete": None}
    client.apply_body(json.dumps(body).encode())
    assert served(server.named, f"old.{parent}", "A") == ["192.0.2.17"]


# ------------------------------------------------------------------ changes

def test_create_update_delete_across_two_zones(webhook):
    """What external-dns sends, as it sends it: the desired records through
    /adjustendpoints first, then each with its registry TXT record, records first."""
    server, client, parent, child = webhook
    named = server.named
    client.negotiate()
    www, api = f"web.{parent}", f"api.{child}"
    desired = client.adjust([
        endpoint(www, "A", "192.0.2.1", "192.0.2.2", ttl=300),
        endpoint(f"v6.{parent}", "AAAA", "2001:db8::1"),
        endpoint(f"alias.{parent}", "CNAME", f"web.{child}"),
        endpoint(api, "A", "192.0.2.3"), endpoint(f"web.{child}", "A", "192.0.2.4"),
        endpoint(f"mail.{child}", "MX", f"10 mx.{child}", f"20 mx2.{parent}"),
        endpoint(f"mx.{child}", "A", "192.0.2.25"),
        endpoint(f"_sip._tcp.{child}", "SRV", f"10 5 5060 sip.{child}."),
        endpoint(f"note.{parent}", "TXT", "v=spf1 include:_spf.example.net ~all")])
    pairs = {e["dnsName"] + " " + e["recordType"]: owned(
        e["dnsName"], e["recordType"], *e["targets"], ttl=e["recordTTL"]) for e in desired}
    client.apply(create=as_sent(*pairs.values()))
    assert served(named, www, "A") == ["192.0.2.1", "192.0.2.2"]
    assert served(named, f"v6.{parent}", "AAAA") == ["2001:db8::1"]
    assert served(named, f"alias.{parent}", "CNAME") == [f"web.{child}."]
    assert served(named, f"mail.{child}", "MX") == [f"10 mx.{child}.", f"20 mx2.{parent}."]
    assert served(named, f"_sip._tcp.{child}", "SRV") == [f"10 5 5060 sip.{child}."]
    registry = ('"heritage=external-dns,external-dns/owner=default,'
                'external-dns/resource=service/default/web"')
    assert served(named, f"a-{www}", "TXT") == ['"' + registry.replace('"', '\\"') + '"']
    # Read back as it was sent: each record in the zone that is its longest suffix.
    records = listed(client)
    assert records[(www, "A")] == (["192.0.2.1", "192.0.2.2"], 300)
    for name in (f"a-{www}", f"cname-alias.{parent}", f"mx-mail.{child}",
                 f"srv-_sip._tcp.{child}", f"txt-note.{parent}"):
        assert records[(name, "TXT")] == ([registry], 3600), name
    assert records[(f"alias.{parent}", "CNAME")] == ([f"web.{child}"], 3600)
    assert records[(f"mail.{child}", "MX")][0] == [f"10 mx.{child}", f"20 mx2.{parent}"]
    assert records[(f"_sip._tcp.{child}", "SRV")][0] == [f"10 5 5060 sip.{child}."]
    assert records[(f"note.{parent}", "TXT")][0] == ["v=spf1 include:_spf.example.net ~all"]
    assert records[(child, "NS")][0] == [f"ns1.{child}"]
    assert (parent, "SOA") not in records and (child, "SOA") not in records
    # An update: the record set as read and as wanted, each with its TXT record (made
    # again from its labels); deletes with theirs.
    old = pairs[f"{www} A"]
    new = owned(www, "A", "192.0.2.9", ttl=60, resource="ingress/default/web")
    client.apply(update_old=as_sent(old), update_new=as_sent(new),
                 delete=as_sent(pairs[f"alias.{parent} CNAME"], pairs[f"{api} A"]))
    assert served(named, www, "A") == ["192.0.2.9"]
    assert served(named, f"a-{www}", "TXT") == [
        '"' + new[1]["targets"][0].replace('"', '\\"') + '"']
    assert served(named, f"alias.{parent}", "CNAME") == []
    assert served(named, f"cname-alias.{parent}", "TXT") == []
    assert served(named, api, "A") == served(named, f"a-{api}", "TXT") == []
    records = listed(client)
    assert records[(www, "A")] == (["192.0.2.9"], 60)
    assert (f"alias.{parent}", "CNAME") not in records


def test_delegation_and_glue_are_listed_from_the_child_zone_only(webhook):
    server, client, parent, child = webhook
    for body in ({"name": "sub", "type": "NS", "value": f"ns1.{child}."},
                 {"name": "ns1.sub", "type": "A", "value": "127.0.0.1"}):
        status, answer, _ = server.request("POST", f"/api/v1/zones/{parent}/records", body)
        assert status == 201, answer
    records = listed(client)                    # asserts one endpoint per name and type
    assert records[(child, "NS")][0] == [f"ns1.{child}"]
    assert records[(f"ns1.{child}", "A")][0] == ["127.0.0.1"]


def test_a_stale_update_old_applies_nothing_of_its_zone(webhook):
    """Another writer changed the record set after external-dns read it: that zone's
    whole UPDATE fails (503: external-dns reads again and plans again); the other
    zone's change goes in."""
    server, client, parent, child = webhook
    named = server.named
    app = owned(f"app.{parent}", "A", "192.0.2.1")
    client.apply(create=as_sent(app))
    assert nsupdate(named, parent, f"update add app.{parent}. 300 A 192.0.2.66").returncode == 0
    wanted = owned(f"app.{parent}", "A", "192.0.2.2")
    with pytest.raises(SoftError, match="code 503"):
        client.apply(update_old=as_sent(app), update_new=as_sent(wanted),
                     create=as_sent(owned(f"new.{parent}", "A", "192.0.2.3"),
                                    owned(f"new.{child}", "A", "192.0.2.4")))
    assert served(named, f"app.{parent}", "A") == ["192.0.2.1", "192.0.2.66"]
    assert served(named, f"new.{parent}", "A") == []
    assert served(named, f"new.{child}", "A") == ["192.0.2.4"]
    lines = [r for r in server.log_records() if r["message"] == "webhook: a change was not "
             "applied" and r["record"] == f"app.{parent} A"]
    assert lines and "no longer what external-dns read" in lines[0]["reason"]
    # Read again, planned again: it goes.
    current = listed(client)[(f"app.{parent}", "A")]
    read = owned(f"app.{parent}", "A", *current[0], ttl=current[1])
    client.apply(update_old=as_sent(read), update_new=as_sent(wanted))
    assert served(named, f"app.{parent}", "A") == ["192.0.2.2"]


def test_an_invalid_target_applies_nothing_of_its_zone(webhook):
    """(adjust leaves such a record out, so external-dns does not plan it.)"""
    server, client, parent, child = webhook
    named = server.named
    with pytest.raises(SoftError, match="code 503"):
        client.apply(create=as_sent(owned(f"good.{parent}", "A", "192.0.2.1"),
                                    owned(f"bad.{parent}", "A", "not-an-address"),
                                    owned(f"good.{child}", "A", "192.0.2.2")))
    assert served(named, f"good.{parent}", "A") == served(named, f"a-good.{parent}", "TXT") \
        == []
    assert served(named, f"good.{child}", "A") == ["192.0.2.2"]
    lines = [r for r in server.log_records() if r.get("record") == f"bad.{parent} A"]
    assert "not an IPv4" in lines[0]["reason"]


def test_a_name_in_no_offered_zone_is_not_applied(webhook):
    """(external-dns plans only names its domain filter, bindcar's zones, covers.)"""
    server, client, parent, _ = webhook
    with pytest.raises(SoftError, match="code 503"):
        client.apply(create=as_sent(owned("www.elsewhere.example", "A", "192.0.2.1")))
    assert any(r.get("record") == "www.elsewhere.example A" and "no zone" in r["reason"]
               for r in server.log_records())


def test_an_apex_record_whose_registry_txt_falls_outside_is_not_made(webhook):
    """The registry puts ``a-`` before the first label: the apex's TXT record,
    ``a-example.com``, is in no zone bindcar offers.  The record is not made alone
    (it would never be external-dns's); the zone's other changes go in."""
    server, client, parent, child = webhook
    with pytest.raises(SoftError, match="code 503"):
        client.apply(create=as_sent(owned(parent, "A", "192.0.2.7"),
                                    owned(f"other.{parent}", "A", "192.0.2.8")))
    assert served(server.named, parent, "A") == []
    assert served(server.named, f"other.{parent}", "A") == ["192.0.2.8"]
    reasons = [r["reason"] for r in server.log_records() if r.get("record") == f"{parent} A"]
    assert "--txt-prefix" in reasons[0]


def test_a_child_apex_is_made_only_once_its_registry_txt_is_in_the_parent(webhook):
    """The child zone's apex record has its TXT record, ``a-sub.X.example``, in the
    parent zone: the parent's UPDATE goes first, and when it fails (here another
    writer changed a record set external-dns read there), the apex record waits."""
    server, client, parent, child = webhook
    named = server.named
    app = owned(f"app.{parent}", "A", "192.0.2.1")
    client.apply(create=as_sent(app))
    assert nsupdate(named, parent, f"update add app.{parent}. 300 A 192.0.2.66").returncode == 0
    apex = owned(child, "A", "192.0.2.7")
    with pytest.raises(SoftError):
        client.apply(update_old=as_sent(app),
                     update_new=as_sent(owned(f"app.{parent}", "A", "192.0.2.2")),
                     create=as_sent(apex, owned(f"other.{child}", "A", "192.0.2.8")))
    assert served(named, child, "A") == served(named, f"a-{child}", "TXT") == []
    assert served(named, f"other.{child}", "A") == ["192.0.2.8"]
    client.apply(create=as_sent(apex))
    assert served(named, child, "A") == ["192.0.2.7"] and served(named, f"a-{child}", "TXT")


def test_a_wildcard_is_not_taken_for_a_name_s_own_data(webhook):
    """A query's answer may be a wildcard's, which UPDATE prerequisites never see: what
    holds a change up is read from the zone's own records (AXFR)."""
    server, client, parent, _ = webhook
    named = server.named
    for line in (f'update add *.{parent}. 300 TXT "wild"', f"update add *.{parent}. 300 A "
                 "192.0.2.42", f'update add a-foo.{parent}. 300 TXT "taken"'):
        assert nsupdate(named, parent, line).returncode == 0
    with pytest.raises(SoftError):              # foo's registry TXT name is taken
        client.apply(create=as_sent(owned(f"foo.{parent}", "A", "192.0.2.1"),
                                    owned(f"web7.{parent}", "A", "192.0.2.2")))
    assert served(named, f"web7.{parent}", "A") == ["192.0.2.2"]
    assert served(named, f"a-web7.{parent}", "TXT") != ['"wild"']
    name, legacy = f"legacy.{parent}", "heritage=external-dns,external-dns/owner=default"
    assert nsupdate(named, parent, f"update add {name}. 300 A 192.0.2.5\n"
                    f'update add {name}. 300 TXT "{legacy}"').returncode == 0
    force = [{"name": "txt/force-update", "value": "true"}]
    old = {**endpoint(name, "A", "192.0.2.5", ttl=300, labels={"owner": "default"}),
           "providerSpecific": force}
    new = owned(name, "A", "192.0.2.5")
    client.apply(update_old=[old, {**registry_txt(old), "providerSpecific": force}],
                 update_new=as_sent(new))               # a-legacy answers "wild" to a query
    assert served(named, f"a-{name}", "TXT") == [
        '"' + new[1]["targets"][0].replace('"', '\\"') + '"']


def test_a_registry_txt_name_bindcar_refuses_holds_up_its_record_only(webhook):
    """``--txt-prefix=%{record_type}-edns.`` makes a wildcard's TXT name ``a-edns.*.zone``,
    whose '*' bindcar will not write mid-name: that record waits (the log says to set
    --txt-wildcard-replacement), and the zone's other changes go in."""
    server, client, parent, _ = webhook
    wild, wild_txt = owned(f"*.{parent}", "A", "192.0.2.42")
    other, other_txt = owned(f"other.{parent}", "A", "192.0.2.8")
    wild_txt["dnsName"], other_txt["dnsName"] = f"a-edns.*.{parent}", f"a-edns.other.{parent}"
    with pytest.raises(SoftError):
        client.apply(create=as_sent((wild, wild_txt), (other, other_txt)))
    assert served(server.named, f"other.{parent}", "A") == ["192.0.2.8"]
    assert served(server.named, f"a-edns.other.{parent}", "TXT")
    assert served(server.named, f"x.{parent}", "A") == []
    reasons = [r["reason"] for r in server.log_records() if r.get("record") == f"*.{parent} A"]
    assert "--txt-wildcard-replacement" in reasons[0]


def test_a_cname_beside_other_data_is_refused_by_name(webhook):
    """named would drop the CNAME without a word (RFC 2136 §3.4.2.2).  Bare endpoints:
    bindcar's rules alone, whatever sends them."""
    server, client, parent, _ = webhook
    client.apply(create=[endpoint(f"both.{parent}", "TXT", "text")])
    with pytest.raises(SoftError):
        client.apply(create=[endpoint(f"both.{parent}", "CNAME", "target.example.net")])
    assert served(server.named, f"both.{parent}", "CNAME") == []
    reasons = [r["reason"] for r in server.log_records() if r.get("record") ==
               f"both.{parent} CNAME"]
    assert reasons == [f"both.{parent}. already has TXT data, and a CNAME must be alone at its "
                       "name; not applied"]
    # ...but a CNAME that replaces the name's A in the same changes goes in.
    client.apply(create=[endpoint(f"swap.{parent}", "A", "192.0.2.1")])
    client.apply(delete=[endpoint(f"swap.{parent}", "A", "192.0.2.1")],
                 create=[endpoint(f"swap.{parent}", "CNAME", "target.example.net")])
    assert served(server.named, f"swap.{parent}", "CNAME") == ["target.example.net."]


def test_a_wildcard_and_its_registry_record(webhook):
    """The registry names a wildcard's TXT record ``a-*.zone``."""
    server, client, parent, _ = webhook
    client.apply(create=as_sent(owned(f"*.{parent}", "A", "192.0.2.42")))
    assert served(server.named, f"anything.{parent}", "A") == ["192.0.2.42"]
    records = listed(client)
    assert (f"a-*.{parent}", "TXT") in records and (f"*.{parent}", "A") in records


def test_a_large_batch_goes_in_several_updates_each_name_with_its_txt(webhook):
    """More than one UPDATE message holds (64 KiB), in a body over the API's 1 MiB.  A
    record and its registry TXT record always go in the same UPDATE.  Another writer's
    TXT record at one registry name holds up that name only: external-dns takes it
    for an ordinary record and sends that TXT create again each run, until the other
    record goes."""
    server, client, parent, _ = webhook
    named = server.named
    taken = f"a-host1499.{parent}"
    assert nsupdate(named, parent, f'update add {taken}. 300 TXT "taken"').returncode == 0
    pairs = [owned(f"host{i}.{parent}", "A", f"10.0.{i // 250}.{i % 250 + 1}",
                   resource=f"service/default/{'x' * 300}{i}") for i in range(1500)]
    with pytest.raises(SoftError, match="code 503"):
        client.apply(create=as_sent(*pairs))
    records = listed(client)
    hosts = {n for n, t in records if n.startswith("host") and t == "A"}
    owners = {n[2:] for n, t in records if n.startswith("a-host") and t == "TXT"}
    assert len(hosts) == 1499 and f"host1499.{parent}" not in hosts
    assert owners - {f"host1499.{parent}"} == hosts         # no record without its TXT
    reasons = [r["reason"] for r in server.log_records() if r.get("record") == f"{taken} TXT"]
    assert reasons[0].startswith(f'{taken}. TXT exists already ("taken")')
    with pytest.raises(SoftError, match="code 503"):     # the next run: still held up
        client.apply(create=as_sent(pairs[1499]))
    assert nsupdate(named, parent, f"update delete {taken}. TXT").returncode == 0
    client.apply(create=as_sent(pairs[1499]))
    assert served(named, f"host1499.{parent}", "A") == ["10.0.5.250"]


def test_a_partial_delete_does_not_make_room_for_a_cname(webhook):
    """A delete takes only the values external-dns names: what another writer added
    stays, and a CNAME beside it is refused, never dropped by named without a word."""
    server, client, parent, _ = webhook
    named = server.named
    client.apply(create=as_sent(owned(f"w2.{parent}", "A", "192.0.2.1")))
    assert nsupdate(named, parent, f"update add w2.{parent}. 300 A 192.0.2.2").returncode == 0
    with pytest.raises(SoftError):
        client.apply(delete=as_sent(owned(f"w2.{parent}", "A", "192.0.2.1")),
                     create=as_sent(owned(f"w2.{parent}", "CNAME", "target.example.net")))
    assert served(named, f"w2.{parent}", "A") == ["192.0.2.1", "192.0.2.2"]
    client.apply(create=[endpoint(f"c3.{parent}", "CNAME", "x.example.net")])
    with pytest.raises(SoftError):               # the CNAME named is not the one it holds
        client.apply(delete=[endpoint(f"c3.{parent}", "CNAME", "y.example.net")],
                     create=[endpoint(f"c3.{parent}", "A", "192.0.2.3")])
    assert served(named, f"c3.{parent}", "CNAME") == ["x.example.net."]
    assert served(named, f"c3.{parent}", "A") == []


def test_txt_force_update_makes_the_typed_registry_record(webhook):
    """A record owned through the registry's older TXT record (untyped, at the record's
    own name) and no typed one: external-dns sends an update with providerSpecific
    txt/force-update, its updateOld naming the typed TXT record that is not there (its
    text made from the older record's labels).  The typed one is made; the older one
    is left, as external-dns leaves it."""
    server, client, parent, _ = webhook
    named = server.named
    name = f"legacy.{parent}"
    legacy = "heritage=external-dns,external-dns/owner=default"
    assert nsupdate(named, parent, f"update add {name}. 300 A 192.0.2.5\n"
                    f'update add {name}. 300 TXT "{legacy}"').returncode == 0
    force = [{"name": "txt/force-update", "value": "true"}]
    old_record = {**endpoint(name, "A", "192.0.2.5", ttl=300, labels={"owner": "default"}),
                  "providerSpecific": force}
    old_txt = {**registry_txt(old_record), "providerSpecific": force}
    new = owned(name, "A", "192.0.2.5", ttl=3600)
    client.apply(update_old=[old_record, old_txt], update_new=as_sent(new))
    assert served(named, f"a-{name}", "TXT") == [
        '"' + new[1]["targets"][0].replace('"', '\\"') + '"']
    assert served(named, name, "TXT") == [f'"{legacy}"']
    records = listed(client)
    assert records[(name, "A")] == (["192.0.2.5"], 3600)


def test_a_zone_made_again_with_the_same_serial_is_read_again(webhook):
    server, client, parent, child = webhook
    before = listed(client)
    assert before[(f"www.{child}", "A")][0] == ["192.0.2.10"]
    assert server.request("DELETE", f"/api/v1/zones/{child}")[0] == 200
    body = zone_body(child, key=KEY)
    body["zoneConfig"]["records"][0]["value"] = "192.0.2.99"        # the same serial
    assert server.request("POST", "/api/v1/zones", body)[0] == 201
    assert listed(client)[(f"www.{child}", "A")][0] == ["192.0.2.99"]


def test_what_can_never_be_applied_is_refused_without_cost(webhook):
    server, client, parent, _ = webhook
    with pytest.raises(SoftError):               # named never lets the apex NS go
        client.apply(update_old=[endpoint(parent, "NS", f"ns1.{parent}")],
                     update_new=[endpoint(parent, "NS", "ns.example.net")])
    assert served(server.named, parent, "NS") == [f"ns1.{parent}."]
    huge = "a." * 20000 + parent                 # 20,000 labels: refused by its length
    with pytest.raises(SoftError):
        client.apply(create=[endpoint(huge, "A", "192.0.2.1")])
    assert client.adjust([endpoint(huge, "A", "192.0.2.1")]) == []
    status, _, _ = client._request("POST", "/records", b'{"delete":[' + b"{}," * 400_000
                                   + b"{}]}", headers=[("Content-Type", MEDIA_TYPE)])
    assert status == 413


# ------------------------------------------------------------------ adjust

def test_adjust_returns_what_bindcar_stores_and_drops_what_it_cannot(webhook):
    server, client, parent, child = webhook
    given = [endpoint(f"WWW.{parent.upper()}", "A", "192.0.2.1"),
             endpoint(f"alias.{parent}", "CNAME", "Target.Example.NET."),
             endpoint(f"v6.{child}", "AAAA", "2001:DB8:0::1", ttl=120),
             endpoint(f"bad.{parent}", "A", "300.1.1.1"),
             endpoint("www.elsewhere.example", "A", "192.0.2.1"),
             endpoint(f"n.{parent}", "NAPTR", '100 10 "u" "E2U+sip" "!^.*$!sip:x@y!" .'),
             {**endpoint(f"w.{parent}", "A", "192.0.2.5"), "setIdentifier": "eu"},
             {**endpoint(f"p.{parent}", "A", "192.0.2.6"),
              "providerSpecific": [{"name": "webhook/x", "value": "1"}]}]
    adjusted = client.adjust(given)
    assert adjusted == [
        {"dnsName": f"www.{parent}", "targets": ["192.0.2.1"], "recordType": "A",
         "recordTTL": 3600},
        {"dnsName": f"alias.{parent}", "targets": ["target.example.net"],
         "recordType": "CNAME", "recordTTL": 3600},
        {"dnsName": f"v6.{child}", "targets": ["2001:db8::1"], "recordType": "AAAA",
         "recordTTL": 120},
        {"dnsName": f"p.{parent}", "targets": ["192.0.2.6"], "recordType": "A",
         "recordTTL": 3600}]
    dropped = {r["record"]: r["reason"] for r in server.log_records()
               if r["message"].startswith("webhook: external-dns asked for a record")}
    assert set(dropped) == {f"bad.{parent} A", "www.elsewhere.example A", f"n.{parent} NAPTR",
                            f"w.{parent} A"}
    assert "setIdentifier" in dropped[f"w.{parent} A"]
    client.adjust(given)                        # asked again: logged once, at warn
    assert sum(1 for r in server.log_records() if r["level"] == "warn"
               and r.get("record") == f"bad.{parent} A") == 1


# ------------------------------------------------------------------ reads

def test_a_warm_listing_transfers_nothing(webhook):
    server, client, parent, child = webhook
    client.records()
    transfers = metric(server, "bindcar_webhook_zone_reads_total", how="transfer")
    first = client.records()
    assert metric(server, "bindcar_webhook_zone_reads_total", how="transfer") == transfers
    assert metric(server, "bindcar_webhook_zone_reads_total", how="cached") >= 2
    client.apply(create=[endpoint(f"fresh.{child}", "A", "192.0.2.7")])
    second = client.records()
    assert metric(server, "bindcar_webhook_zone_reads_total", how="transfer") == transfers + 1
    assert len(second) == len(first) + 1
    assert metric(server, "bindcar_webhook_requests_total", call="records", status="200") == 3


def test_named_stopped_is_a_5xx_never_a_shorter_list(own_named, make_bindcar, unique):
    port = free_port()
    server = make_bindcar(own_named, WEBHOOK_ADDRESS=f"127.0.0.1:{port}")
    client = ExternalDNS(port)
    zones = [f"{unique}.example", f"other.{unique}.test"]
    for zone in zones:
        assert server.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))[0] == 201
    client.apply(create=as_sent(owned(f"app.{zones[0]}", "A", "192.0.2.1")))
    before = listed(client)
    own_named.stop()
    with pytest.raises(SoftError, match="code 503"):
        client.records()
    with pytest.raises(SoftError, match="code 503"):
        client.apply(create=[endpoint(f"x.{zones[0]}", "A", "192.0.2.2")])
    own_named.start()
    assert listed(client) == before
    client.apply(create=[endpoint(f"x.{zones[0]}", "A", "192.0.2.2")])
    assert served(own_named, f"x.{zones[0]}", "A") == ["192.0.2.2"]
    after = listed(client)
    server.stop()                               # bindcar restarted: nothing cached
    server.start()
    assert client.negotiate() == {"include": sorted(zones)}
    assert listed(client) == after


# ------------------------------------------------------------------ beside a remote named

REMOTE_ZONE = """\
$TTL 300
@ IN SOA ns1 admin 2026010101 3600 600 604800 300
@ IN NS ns1
ns1 IN A 127.0.0.1
"""


def test_beside_a_remote_named_records_and_the_webhook_work(make_named, make_bindcar):
    """external-dns's sidecar: no zone directory, WEBHOOK_ZONES, named.conf's zones, and
    a read-only control channel.  Zones are not created or deleted (503 naming the
    setting); records and the webhook work."""
    zones = ("example.com", "apps.example.com")
    named = make_named(start=False, controls="read-only yes", extra_conf="".join(
        f'zone "{z}" {{ type primary; file "{z}.db"; allow-update {{ key "{KEY}"; }}; '
        f'allow-transfer {{ key "{KEY}"; }}; }};\n' for z in zones))
    for zone in zones:
        with open(f"{named.dir}/{zone}.db", "w") as f:
            f.write(REMOTE_ZONE)
    named.start()
    port = free_port()
    server = make_bindcar(named, BIND_ZONE_DIR="", WEBHOOK_ADDRESS=f"localhost:{port}",
                          WEBHOOK_ZONES="Apps.Example.com.,example.com")
    client = ExternalDNS(port)
    assert client.negotiate() == {"include": ["apps.example.com", "example.com"]}
    client.apply(create=as_sent(owned("web.apps.example.com", "A", "192.0.2.8"),
                                owned("www.example.com", "CNAME", "web.apps.example.com")))
    assert served(named, "web.apps.example.com", "A") == ["192.0.2.8"]
    records = listed(client)
    assert records[("www.example.com", "CNAME")][0] == ["web.apps.example.com"]
    assert records[("apps.example.com", "NS")][0] == ["ns1.apps.example.com"]
    status, body, _ = server.request("GET", "/api/v1/zones/example.com/records")
    assert status == 200 and any(r["name"] == "www" for r in body["records"])
    for method, path, body in (("POST", "/api/v1/zones", zone_body("new.example.com")),
                               ("DELETE", "/api/v1/zones/example.com", None),
                               ("PATCH", "/api/v1/zones/example.com", {"allowUpdate": []})):
        status, answer, _ = server.request(method, path, body)
        assert status == 503 and answer["field"] == "BIND_ZONE_DIR", answer
    status, ready, _ = server.request("GET", "/ready", token=None)
    assert status == 200 and "zone directory: none (records only)" in ready["checks"]
    assert any("no zone directory" in r["message"] for r in server.log_records())
    with pytest.raises(SoftError):          # named refuses: its error explained over RNDC
        client.apply(create=[endpoint("x.example.com", "MX", "10 nowhere.example.com")])
    reasons = [r["reason"] for r in server.log_records() if r.get("record") == "x.example.com MX"]
    assert "nowhere.example.com. is inside zone example.com and has no A or AAAA" in reasons[0]
    # A zone named does not serve: the whole listing fails, the others are not shown alone.
    port = free_port()
    make_bindcar(named, BIND_ZONE_DIR="", WEBHOOK_ADDRESS=f"127.0.0.1:{port}",
                 WEBHOOK_ZONES="example.com,missing.example.org")
    with pytest.raises(SoftError, match="code 503"):
        ExternalDNS(port).records()


@pytest.mark.parametrize("env, message", [
    ({"WEBHOOK_ADDRESS": "0.0.0.0:8888"}, "WEBHOOK_ADDRESS='0.0.0.0:8888': external-dns's "
     "webhook protocol has no authentication"),
    ({"WEBHOOK_ADDRESS": "127.0.0.1"}, "needs a port"),
    ({"WEBHOOK_ADDRESS": "127.0.0.1:8888", "BIND_ZONE_DIR": ""}, "needs WEBHOOK_ZONES"),
    ({"BIND_CATALOG_ZONE": "cat.example", "BIND_ZONE_DIR": ""},
     "BIND_CATALOG_ZONE needs a zone directory"),
    ({"WEBHOOK_ZONES": "bad..name"}, "WEBHOOK_ZONES="),
])
def test_settings_bindcar_refuses_at_start(named, make_bindcar, env, message):
    server = make_bindcar(named, start=False, **env)
    server.start(wait=False)
    assert server.proc.wait(timeout=20) == 2
    assert message in server.log_text()


def test_the_webhook_stops_with_bindcar(webhook):
    server, client, _, _ = webhook
    client.records()
    assert server.stop() == 0
    with pytest.raises(OSError):
        client._request("GET", "/records")
    assert not re.search(r'"level":"error"', server.log_text())
