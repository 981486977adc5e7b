"""zonefile: hostile input is refused by field; valid zones pass named-checkzone and named."""

import copy
import datetime
import ipaddress
import os
import random
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import zonefile
from zonefile import ZoneError, parse_zone, parse_zone_update, render_zone_clause, render_zone_file

from conftest import ROOT

BASE = {
    "zoneName": "example.com",
    "zoneType": "primary",
    "zoneConfig": {
        "ttl": 3600,
        "soa": {"primaryNs": "ns1.example.com.", "adminEmail": "admin.example.com.",
                "serial": 2025010101},
        "nameServers": ["ns1.example.com.", "ns2.example.com."],
        "nameServerIps": {"ns1.example.com.": "192.0.2.1", "ns2.example.com.": "192.0.2.2"},
        "records": [{"name": "www", "type": "A", "value": "192.0.2.10", "ttl": 300},
                    {"name": "@", "type": "MX", "value": "mail.example.com.", "priority": 10}],
    },
}
SECONDARY = {"zoneName": "sec.example", "zoneType": "secondary",
             "zoneConfig": {"primaries": ["192.0.2.1"]}}
DELETE = object()


def body(changes=(), base=BASE):
    """A copy of ``base`` with ``{"a.b[0].c": value}`` set (or deleted with DELETE)."""
    result = copy.deepcopy(base)
    for path, value in dict(changes).items():
        keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
        target = result
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return result


def rec(**fields):
    return {"zoneConfig.records": [dict({"name": "x", "type": "A", "value": "192.0.2.1"},
                                        **fields)]}


HOSTILE = [
    # zone names: traversal, configuration breakout, newlines, odd labels
    ({"zoneName": "../etc/passwd"}, "zoneName"),
    ({"zoneName": "a/b.com"}, "zoneName"),
    ({"zoneName": "a\\b.com"}, "zoneName"),
    ({"zoneName": 'a".com'}, "zoneName"),
    ({"zoneName": "a;b.com"}, "zoneName"),
    ({"zoneName": "a{b.com"}, "zoneName"),
    ({"zoneName": "a}b.com"}, "zoneName"),
    ({"zoneName": "a b.com"}, "zoneName"),
    ({"zoneName": "a\nb.com"}, "zoneName"),
    ({"zoneName": "a\x00b.com"}, "zoneName"),
    ({"zoneName": "a..com"}, "zoneName"),
    ({"zoneName": "."}, "zoneName"),
    ({"zoneName": ""}, "zoneName"),
    ({"zoneName": "*.example.com"}, "zoneName"),
    ({"zoneName": "a" * 64 + ".com"}, "zoneName"),
    ({"zoneName": "a." * 127 + "com"}, "zoneName"),
    ({"zoneName": "exämple.com"}, "zoneName"),
    ({"zoneName": "-clean"}, "zoneName"),
    ({"zoneName": 123}, "zoneName"),
    ({"zoneName": None}, "zoneName"),
    ({"zoneName": DELETE}, "zoneName"),
    # shapes and types
    ({"zoneType": "hint"}, "zoneType"),
    ({"zoneType": True}, "zoneType"),
    ({"zoneConfig": DELETE}, "zoneConfig"),
    ({"zoneConfig": "x"}, "zoneConfig"),
    ({"zoneNmae": "x"}, "zoneNmae"),
    ({"zoneConfig.allowTranfer": ["192.0.2.1"]}, "zoneConfig.allowTranfer"),
    ({"zoneConfig.ttl": True}, "zoneConfig.ttl"),
    ({"zoneConfig.ttl": -1}, "zoneConfig.ttl"),
    ({"zoneConfig.ttl": 2**31}, "zoneConfig.ttl"),
    ({"zoneConfig.ttl": 3600.0}, "zoneConfig.ttl"),
    ({"zoneConfig.ttl": "3600"}, "zoneConfig.ttl"),
    ({"zoneConfig.ttl": None}, "zoneConfig.ttl"),
    ({"zoneConfig.soa.serial": 2**32}, "zoneConfig.soa.serial"),
    ({"zoneConfig.soa.serial": -1}, "zoneConfig.soa.serial"),
    ({"zoneConfig.soa.refresh": "٣٦٠٠"}, "zoneConfig.soa.refresh"),
    ({"zoneConfig.soa.retry": 10**20}, "zoneConfig.soa.retry"),
    ({"zoneConfig.soa.primaryNs": 'ns1"; };'}, "zoneConfig.soa.primaryNs"),
    ({"zoneConfig.soa.primaryNs": "ns_1.example.com."}, "zoneConfig.soa.primaryNs"),
    ({"zoneConfig.soa.adminEmail": "first.last@example.com"}, "zoneConfig.soa.adminEmail"),
    ({"zoneConfig.soa.adminEmail": "admin@exa mple.com"}, "zoneConfig.soa.adminEmail"),
    ({"zoneConfig.soa.minimum": 5}, "zoneConfig.soa.minimum"),
    ({"zoneConfig.soa.primaryNs": DELETE}, "zoneConfig.soa.primaryNs"),
    ({"zoneConfig.soa": []}, "zoneConfig.soa"),
    ({"zoneConfig.nameServers": []}, "zoneConfig.nameServers"),
    ({"zoneConfig.nameServers": "ns1.example.com."}, "zoneConfig.nameServers"),
    ({"zoneConfig.nameServers": ["ns_1.example.com."]}, "zoneConfig.nameServers[0]"),
    ({"zoneConfig.nameServers": ["ns1.example.com.\n@ IN A 1.2.3.4"]},
     "zoneConfig.nameServers[0]"),
    ({"zoneConfig.nameServerIps": {"ns1.example.com.": "192.0.2.1%eth0"}},
     "zoneConfig.nameServerIps.ns1.example.com."),
    ({"zoneConfig.nameServerIps": {"ns1.example.com.": "1.2.3"}},
     "zoneConfig.nameServerIps.ns1.example.com."),
    ({"zoneConfig.nameServerIps": ["192.0.2.1"]}, "zoneConfig.nameServerIps"),
    ({"zoneConfig.nameServerIps": {"ns1.example.com.": "192.0.2.1"}},
     "zoneConfig.nameServers[1]"),                          # ns2 in the zone, no address
    ({"zoneConfig.records": [{"name": "sub", "type": "NS", "value": "ns.sub"}]},
     "zoneConfig.records[0].value"),
    # records: addresses
    (rec(value="192.0.2.256"), "zoneConfig.records[0].value"),
    (rec(value="192.0.2.1\n$INCLUDE /etc/passwd"), "zoneConfig.records[0].value"),
    (rec(value="192.0.2.01"), "zoneConfig.records[0].value"),
    (rec(value="١٩٢.0.2.1"), "zoneConfig.records[0].value"),
    (rec(value="::1"), "zoneConfig.records[0].value"),
    (rec(type="AAAA", value='fe80::1%"; };'), "zoneConfig.records[0].value"),
    (rec(type="AAAA", value="1.2.3.4"), "zoneConfig.records[0].value"),
    (rec(value=3232235777), "zoneConfig.records[0].value"),
    # records: owners
    (rec(name="www\n$INCLUDE /etc/shadow"), "zoneConfig.records[0].name"),
    (rec(name="a.*.b"), "zoneConfig.records[0].name"),
    (rec(name="www.other.com."), "zoneConfig.records[0].name"),
    (rec(name="_x"), "zoneConfig.records[0].name"),
    (rec(name="$ORIGIN"), "zoneConfig.records[0].name"),
    (rec(name="@ 300"), "zoneConfig.records[0].name"),
    (rec(name="x;y"), "zoneConfig.records[0].name"),
    (rec(name=None), "zoneConfig.records[0].name"),
    # records: types and data
    (rec(type="SOA"), "zoneConfig.records[0].type"),
    (rec(type="DNAME"), "zoneConfig.records[0].type"),
    (rec(type=["A"]), "zoneConfig.records[0].type"),
    (rec(type="CNAME", value="x; comment"), "zoneConfig.records[0].value"),
    (rec(type="CNAME", name="@", value="other.com."), "zoneConfig.records[0].name"),
    ({"zoneConfig.records": [{"name": "c", "type": "A", "value": "192.0.2.1"},
                             {"name": "c", "type": "CNAME", "value": "x"}]},
     "zoneConfig.records[1].name"),
    ({"zoneConfig.records": [{"name": "ns1", "type": "CNAME", "value": "x"}]},
     "zoneConfig.records[0].name"),                                        # glue owner
    (rec(type="MX", value="mail", priority=70000), "zoneConfig.records[0].priority"),
    (rec(type="MX", value="mail", priority=True), "zoneConfig.records[0].priority"),
    (rec(type="MX", value="١٠ mail.example.com."), "zoneConfig.records[0].value"),
    (rec(type="MX", value="10 _mail.example.com."), "zoneConfig.records[0].value"),
    (rec(priority=10), "zoneConfig.records[0].priority"),
    (rec(type="SRV", name="_sip._tcp", value="0 5060", priority=1),
     "zoneConfig.records[0].value"),
    (rec(type="SRV", name="_sip._tcp", value="1 0 70000 sip"), "zoneConfig.records[0].value"),
    (rec(type="SRV", name="_sip._tcp", value="-1 0 5060 sip"), "zoneConfig.records[0].value"),
    (rec(type="TXT", value="line1\nline2"), "zoneConfig.records[0].value"),
    (rec(type="TXT", value="del\x7f"), "zoneConfig.records[0].value"),
    (rec(type="TXT", value="c1 \x85 control"), "zoneConfig.records[0].value"),
    (rec(type="TXT", value="x" * 70000), "zoneConfig.records[0].value"),
    (rec(type="TXT", value='"a\\999"'), "zoneConfig.records[0].value"),
    (rec(type="CAA", value="256 issue ca.example"), "zoneConfig.records[0].value"),
    (rec(type="CAA", value="0 is-sue ca.example"), "zoneConfig.records[0].value"),
    (rec(type="CAA", value="0 issue"), "zoneConfig.records[0].value"),
    (rec(type="NS", value="ns 1"), "zoneConfig.records[0].value"),
    (rec(ttl=-5), "zoneConfig.records[0].ttl"),
    (rec(ttl="300"), "zoneConfig.records[0].ttl"),
    (rec(extra=1), "zoneConfig.records[0].extra"),
    ({"zoneConfig.records": "www A 1.2.3.4"}, "zoneConfig.records"),
    ({"zoneConfig.records": [123]}, "zoneConfig.records[0]"),
    # ACLs and remote servers
    ({"zoneConfig.alsoNotify": ['192.0.2.1"; }; zone "evil']}, "zoneConfig.alsoNotify[0]"),
    ({"zoneConfig.alsoNotify": ["192.0.2.1:0"]}, "zoneConfig.alsoNotify[0]"),
    ({"zoneConfig.alsoNotify": ["192.0.2.1"] * 300}, "zoneConfig.alsoNotify"),
    ({"zoneConfig.allowTransfer": ["fe80::1%eth0"]}, "zoneConfig.allowTransfer[0]"),
    ({"zoneConfig.allowTransfer": ["10.0.0.1/8"]}, "zoneConfig.allowTransfer[0]"),
    ({"zoneConfig.allowTransfer": ["key bad;name"]}, "zoneConfig.allowTransfer[0]"),
    ({"zoneConfig.allowUpdate": ["key a b"]}, "zoneConfig.allowUpdate[0]"),
    ({"zoneConfig.allowTransfer": "any"}, "zoneConfig.allowTransfer"),
    ({"zoneConfig.allowTransfer": [None]}, "zoneConfig.allowTransfer[0]"),
    ({"zoneConfig.primaries": ["192.0.2.1"]}, "zoneConfig.primaries"),
    ({"updateKeyName": 'k"; }; allow-update { any; }; "'}, "updateKeyName"),
    ({"updateKeyName": "key name"}, "updateKeyName"),
    ({"updateKeyName": "a..b"}, "updateKeyName"),
    ({"updateKeyName": 7}, "updateKeyName"),
    ({"zoneConfig.dnssecPolicy": 'default"; };'}, "zoneConfig.dnssecPolicy"),
    ({"zoneConfig.inlineSigning": "yes"}, "zoneConfig.inlineSigning"),
]

HOSTILE_SECONDARY = [
    ({"zoneConfig.primaries": DELETE}, "zoneConfig.primaries"),
    ({"zoneConfig.primaries": []}, "zoneConfig.primaries"),
    ({"zoneConfig.primaries": ["192.0.2.1 port 99999"]}, "zoneConfig.primaries[0]"),
    ({"zoneConfig.primaries": ["[192.0.2.1]:53"]}, "zoneConfig.primaries[0]"),
    ({"zoneConfig.primaries": ["192.0.2.1 port 53 key x"]}, "zoneConfig.primaries[0]"),
    ({"zoneConfig.primaries": ["2001:db8::1 port"]}, "zoneConfig.primaries[0]"),
    ({"zoneConfig.records": [{"name": "www", "type": "A", "value": "192.0.2.1"}]},
     "zoneConfig.records"),
]


def test_the_table_is_long_enough():
    assert len(HOSTILE) + len(HOSTILE_SECONDARY) >= 60


@pytest.mark.parametrize("changes, field", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_is_refused_naming_the_field(changes, field):
    with pytest.raises(ZoneError) as e:
        parse_zone(body(changes))
    assert e.value.field == field, e.value
    assert str(e.value).startswith(field + ": ") and e.value.message


@pytest.mark.parametrize("changes, field", HOSTILE_SECONDARY, ids=range(len(HOSTILE_SECONDARY)))
def test_hostile_secondary_input_is_refused_naming_the_field(changes, field):
    with pytest.raises(ZoneError) as e:
        parse_zone(body(changes, SECONDARY))
    assert e.value.field == field, e.value


@pytest.mark.parametrize("value", [None, [], "x", 1])
def test_body_that_is_not_an_object_is_refused(value):
    with pytest.raises(ZoneError) as e:
        parse_zone(value)
    assert e.value.field == "body"


def test_first_error_wins():
    with pytest.raises(ZoneError) as e:
        parse_zone(body({"zoneName": "a/b", "zoneConfig.ttl": -1}))
    assert e.value.field == "zoneName"


# ------------------------------------------------------------------ what valid input becomes

def test_names_are_normalised():
    zone = parse_zone(body({"zoneName": "Example.COM."}))
    assert zone.name == "example.com"
    assert zonefile.parse_zone_name("XN--BCHER-KVA.example") == "xn--bcher-kva.example"


def test_nulls_mean_absent_as_rust_clients_send_them():
    zone = parse_zone(body({"zoneConfig.alsoNotify": None, "zoneConfig.allowTransfer": None,
                            "zoneConfig.primaries": None, "zoneConfig.dnssecPolicy": None,
                            "zoneConfig.inlineSigning": None, "updateKeyName": None,
                            "zoneConfig.records[0].priority": None,
                            "zoneConfig.soa.refresh": None}))
    assert zone.also_notify is None and zone.update_key is None and zone.soa.refresh == 3600


def test_defaults_and_aliases():
    zone = parse_zone(body({"zoneType": "master", "zoneConfig.soa.serial": DELETE,
                            "zoneConfig.soa.adminEmail": "hostmaster@example.com"}))
    assert zone.type == "primary"
    assert zone.soa.admin_email == "hostmaster.example.com."
    assert zone.soa.serial == zonefile.today_serial()
    assert (zone.soa.refresh, zone.soa.retry, zone.soa.expire, zone.soa.negative_ttl) == \
        (3600, 600, 604800, 86400)
    assert parse_zone(body({"zoneType": "slave"}, SECONDARY)).type == "secondary"


def test_rendered_zone_file_is_exact():
    assert render_zone_file(parse_zone(BASE)) == textwrap.dedent("""\
        ; bindcar zone example.com
        $TTL 3600
        example.com. IN SOA ns1.example.com. admin.example.com. 2025010101 3600 600 604800 86400
        example.com. IN NS ns1.example.com.
        example.com. IN NS ns2.example.com.
        ns1.example.com. IN A 192.0.2.1
        ns2.example.com. IN A 192.0.2.2
        www.example.com. 300 IN A 192.0.2.10
        example.com. IN MX 10 mail.example.com.
        """)


def test_txt_is_quoted_escaped_and_split_in_255_octet_chunks():
    zone = parse_zone(body(rec(type="TXT", value='say "hi" \\ ' + "é" * 200)))
    rdata = zone.records[0].rdata
    assert rdata.startswith('"say \\"hi\\" \\\\ \\195\\169')
    chunks = re.findall(r'"((?:[^"\\]|\\.)*)"', rdata)
    assert len(chunks) == 2
    octets = [len(zonefile._unescape(c, "x")) for c in chunks]
    assert octets == [255, 11 + 400 - 255]
    quoted = parse_zone(body(rec(type="TXT", value='"v=spf1 -all" "two"'))).records[0]
    assert quoted.rdata == '"v=spf1 -all" "two"'


def test_injection_attempts_become_inert_text():
    """What cannot be refused (TXT is free text) is rendered as one quoted string."""
    evil = '"; $INCLUDE /etc/passwd ; x\\'
    text = render_zone_file(parse_zone(body(rec(type="TXT", value=evil))))
    line = text.splitlines()[-1]
    assert line == 'x.example.com. IN TXT "\\"; $INCLUDE /etc/passwd ; x\\\\"'
    assert len(text.splitlines()) == len(render_zone_file(parse_zone(BASE)).splitlines()) - 1


def test_clause_for_a_primary_with_everything():
    zone = parse_zone(body({"zoneConfig.alsoNotify": ["192.0.2.2", "192.0.2.3:5353",
                                                      "[2001:DB8::1]:53", "10.244.1.82 port 5353"],
                            "zoneConfig.allowTransfer": ["192.0.2.2", "2001:db8::/32", "any"],
                            "zoneConfig.dnssecPolicy": "default",
                            "zoneConfig.inlineSigning": True, "updateKeyName": "bindy-key"}))
    assert render_zone_clause(zone, "/var/cache/bind/example.com.zone") == (
        '{ type primary; file "/var/cache/bind/example.com.zone"; '
        "also-notify { 192.0.2.2; 192.0.2.3 port 5353; 2001:db8::1 port 53; "
        "10.244.1.82 port 5353; }; allow-transfer { 192.0.2.2; 2001:db8::/32; any; "
        'key "bindy-key"; }; '
        'allow-update { key "bindy-key"; }; dnssec-policy "default"; inline-signing yes; };')


def test_clause_for_a_secondary():
    zone = parse_zone(body({"zoneConfig.primaries": ["192.0.2.1", "192.0.2.2:5353",
                                                     "10.244.1.82 port 5353"]}, SECONDARY))
    assert render_zone_clause(zone, "/z/sec.example.zone") == (
        '{ type secondary; file "/z/sec.example.zone"; '
        "primaries { 192.0.2.1; 192.0.2.2 port 5353; 10.244.1.82 port 5353; }; };")


def test_clause_refuses_a_path_it_cannot_quote_and_an_oversize_clause():
    zone = parse_zone(BASE)
    with pytest.raises(ValueError):
        render_zone_clause(zone, '/z/a".zone')
    big = zonefile.Zone("x.test", "primary", allow_transfer=("2001:db8::/32",) * 2000)
    with pytest.raises(ZoneError, match="at most"):
        render_zone_clause(big, "/z/x.test.zone")


def test_update_replaces_only_the_lists_given():
    zone = parse_zone(body({"updateKeyName": "k", "zoneConfig.alsoNotify": ["192.0.2.9"],
                            "zoneConfig.dnssecPolicy": "default"}))
    update = parse_zone_update({"allowTransfer": ["192.0.2.2"], "alsoNotify": []})
    changed = zonefile.apply_update(zone, update)
    assert changed.allow_transfer == ("192.0.2.2",) and changed.also_notify == ()
    assert (changed.update_key, changed.dnssec_policy, changed.records) == \
        ("k", "default", zone.records)
    clause = render_zone_clause(changed, "/z/f")
    assert "also-notify" not in clause and 'allow-update { key "k"; }' in clause
    cleared = zonefile.apply_update(changed, parse_zone_update({"allowTransfer": []}))
    assert 'allow-transfer { key "k"; }' in render_zone_clause(cleared, "/z/f")
    keyless = zonefile.apply_update(parse_zone(BASE), parse_zone_update({"allowTransfer": []}))
    assert "allow-transfer { none; }" in render_zone_clause(keyless, "/z/f")


@pytest.mark.parametrize("patch, field", [
    ({}, "body"), ({"alsoNotify": None}, "body"), ([], "body"),
    ({"allowTranfer": []}, "allowTranfer"), ({"allowUpdate": ["x"]}, "allowUpdate[0]"),
    ({"alsoNotify": "192.0.2.1"}, "alsoNotify"),
])
def test_bad_update_is_refused(patch, field):
    with pytest.raises(ZoneError) as e:
        parse_zone_update(patch)
    assert e.value.field == field


# ------------------------------------------------------------------ serials

def test_serial_arithmetic():
    assert zonefile.serial_gt(2, 1) and not zonefile.serial_gt(1, 2)
    assert zonefile.serial_gt(0, 2**32 - 1)                      # wraps
    assert not zonefile.serial_gt(5, 5)
    day = datetime.date(2026, 11, 24)
    assert zonefile.today_serial(day) == 2026112401
    assert zonefile.next_serial(2026010105, day) == 2026112401
    assert zonefile.next_serial(2026112401, day) == 2026112402
    assert zonefile.next_serial(2**32 - 1, day) == 2026112401     # RFC 1982: it is greater
    assert zonefile.next_serial(4000000000, day) == 4000000001    # today's is not greater
    assert zonefile.next_serial(2**32 - 1, datetime.date(2200, 1, 1)) == 0
    zonefile.check_serial_raised(2026112401, 2026112402)
    with pytest.raises(ZoneError, match="does not raise"):
        zonefile.check_serial_raised(2026112401, 2026112401)


# ------------------------------------------------------------------ generated zones against named

def generated_zone(seed):
    """A valid create body with every record type and edge values, from a seed."""
    rnd = random.Random(seed)
    zone = f"gen{seed}.example"
    word = lambda: "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                           for _ in range(rnd.randint(1, 12)))
    records = [
        {"name": "@", "type": "A", "value": f"192.0.2.{rnd.randint(0, 255)}"},
        {"name": word(), "type": "A", "value": "198.51.100.7", "ttl": rnd.choice([0, 2**31 - 1])},
        {"name": "*." + word(), "type": "A", "value": "203.0.113.9"},
        {"name": "v6", "type": "AAAA", "value": f"2001:DB8::{rnd.randint(1, 0xffff):x}"},
        {"name": "alias-" + word(), "type": "CNAME", "value": "v6"},
        {"name": "_acme-challenge", "type": "CNAME", "value": "_x.other.example."},
        {"name": "@", "type": "MX", "value": "mail." + zone + ".",
         "priority": rnd.choice([0, 65535])},
        {"name": "mail", "type": "MX", "value": "5 mx.other.example."},
        {"name": "@", "type": "TXT",
         "value": "".join(rnd.choice('ab "\\;$(){}é') for _ in range(rnd.randint(0, 700)))},
        {"name": "_dmarc", "type": "TXT", "value": '"v=DMARC1; p=none" "second"'},
        {"name": "_sip._tcp", "type": "SRV", "value": "5 5060 sip." + zone + ".", "priority": 1},
        {"name": "_xmpp._tcp", "type": "SRV", "value": "0 0 0 ."},
        {"name": "sub", "type": "NS", "value": "ns.sub"},
        {"name": "ns.sub", "type": "A", "value": "192.0.2.53"},
        {"name": "p", "type": "PTR", "value": "host.other.example."},
        {"name": "@", "type": "CAA", "value": '0 issue "ca.example; account=\\"1\\""'},
        {"name": "@", "type": "CAA", "value": "128 iodef mailto:security@" + zone},
        {"name": "mail", "type": "A", "value": "192.0.2.25"},
        {"name": "sip", "type": "AAAA", "value": "::ffff:192.0.2.1"},
        {"name": "ns2", "type": "AAAA", "value": "2001:db8::53"},
    ]
    rnd.shuffle(records)
    return {
        "zoneName": zone, "zoneType": "primary",
        "zoneConfig": {
            "ttl": rnd.randint(0, 2**31 - 1),
            "soa": {"primaryNs": "ns1", "adminEmail": f"hostmaster@{zone}",
                    "serial": rnd.randint(0, 2**32 - 1), "refresh": 0, "retry": 2**31 - 1},
            "nameServers": ["ns1", f"ns2.{zone}.", "ns.other.example."],
            "nameServerIps": {"ns1": "192.0.2.1", "ns.other.example.": "192.0.2.99"},
            "records": records,
            "allowTransfer": ["127.0.0.1"],
        },
    }


@pytest.mark.parametrize("seed", range(25))
def test_generated_zone_passes_named_checkzone(tmp_path, seed):
    zone = parse_zone(generated_zone(seed))
    path = tmp_path / "z.zone"
    path.write_text(render_zone_file(zone))
    done = subprocess.run(["named-checkzone", "-k", "fail", "-i", "local", zone.name, str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr + path.read_text()
    assert render_zone_file(parse_zone(generated_zone(seed))) == path.read_text()   # deterministic


def expected_rrs(zone):
    rrs = {(zone.name + ".", zone.ttl, "NS", ns) for ns in zone.name_servers}
    for record in zone.glue + zone.records:
        rrs.add((record.owner, zone.ttl if record.ttl is None else record.ttl,
                 record.type, record.rdata))
    return rrs


def served_rrs(named, zone_name):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(named.dns_port), "+nocmd", "+nostats",
                          "+noall", "+answer", "+onesoa", zone_name, "AXFR"],
                         capture_output=True, text=True, timeout=30).stdout
    rrs = set()
    for line in out.splitlines():
        owner, ttl, _cls, rtype, rdata = line.split(None, 4)
        if rtype == "AAAA":                # named writes ::ffff:192.0.2.1, Python ::ffff:c000:201
            rdata = str(ipaddress.ip_address(rdata))
        if rtype != "SOA":
            rrs.add((owner, int(ttl), rtype, rdata))
    return rrs


@pytest.mark.parametrize("seed", [100, 101, 102])
def test_generated_zone_is_served_by_named_exactly(named, seed):
    zone = parse_zone(generated_zone(seed))
    path = zonefile.zone_file_path(named.dir, zone.name)
    zonefile.write_zone_file(path, render_zone_file(zone))
    client = named.client()
    client.call(f"addzone {zone.name} {render_zone_clause(zone, path)}")
    try:
        assert served_rrs(named, zone.name) == expected_rrs(zone)
        wild = [r for r in zone.records if r.owner.startswith("*.")][0]
        status, answers = named.dig("anything." + wild.owner[2:])
        assert status == "NOERROR" and answers[0].endswith(wild.rdata)
        assert f"serial: {zone.soa.serial}" in client.call(f"zonestatus {zone.name}")
    finally:
        client.call(f"delzone -clean {zone.name}")


def test_every_clause_option_is_accepted_by_named(named, unique):
    zone = parse_zone(body({"zoneName": f"{unique}.example", "updateKeyName": "update-key",
                            "zoneConfig.soa.primaryNs": f"ns1.{unique}.example.",
                            "zoneConfig.nameServers": [f"ns1.{unique}.example."],
                            "zoneConfig.nameServerIps": {f"ns1.{unique}.example.": "192.0.2.1"},
                            "zoneConfig.records": [],
                            "zoneConfig.alsoNotify": ["127.0.0.2", "127.0.0.3:5353",
                                                      "[::1]:5353"],
                            "zoneConfig.allowTransfer": ["127.0.0.1", "2001:db8::/32"],
                            "zoneConfig.allowUpdate": ["127.0.0.1"],
                            "zoneConfig.inlineSigning": False}))
    path = zonefile.zone_file_path(named.dir, zone.name)
    zonefile.write_zone_file(path, render_zone_file(zone))
    client = named.client()
    client.call(f"addzone {zone.name} {render_zone_clause(zone, path)}")
    shown = client.call(f"showzone {zone.name}")
    for part in ("also-notify", "127.0.0.3 port 5353", "allow-transfer", 'key "update-key"',
                 "127.0.0.1/32", "inline-signing no"):
        assert part in shown
    update = parse_zone_update({"allowTransfer": [], "alsoNotify": []})
    client.call(f"modzone {zone.name} "
                f"{render_zone_clause(zonefile.apply_update(zone, update), path)}")
    shown = client.call(f"showzone {zone.name}")
    # The update key may still read the zone (GET .../records): none gives way to it.
    assert re.search(r'allow-transfer +\{ key "update-key"; \}', shown)
    assert "also-notify" not in shown
    assert 'key "update-key"' in shown
    client.call(f"delzone -clean {zone.name}")


def test_secondary_clause_is_accepted_by_named(named, unique):
    zone = parse_zone(body({"zoneName": f"{unique}.example",
                            "zoneConfig.primaries": [f"127.0.0.1 port {named.dns_port}"]},
                           SECONDARY))
    path = zonefile.zone_file_path(named.dir, zone.name)
    client = named.client()
    client.call(f"addzone {zone.name} {render_zone_clause(zone, path)}")
    assert client.call(f"showzone {zone.name}").startswith(
        f'zone "{zone.name}" {{ type secondary; file "{path}"; primaries {{ 127.0.0.1 port')
    client.call(f"delzone -clean {zone.name}")


# ------------------------------------------------------------------ files

def test_zone_file_path_stays_in_the_directory(tmp_path):
    assert zonefile.zone_file_path(str(tmp_path), "Example.com.") == \
        os.path.join(os.path.realpath(tmp_path), "example.com.zone")
    for evil in ("../evil", "a/../../b", "/etc/passwd", ".."):
        with pytest.raises(ZoneError):
            zonefile.zone_file_path(str(tmp_path), evil)
    os.symlink("/etc/passwd", tmp_path / "link.example.zone")
    with pytest.raises(ValueError, match="outside"):
        zonefile.zone_file_path(str(tmp_path), "link.example")


def test_write_creates_mode_0644_whatever_the_umask(tmp_path):
    path = str(tmp_path / "a.example.zone")
    old = os.umask(0o077)
    try:
        zonefile.write_zone_file(path, "text\n")
    finally:
        os.umask(old)
    assert open(path).read() == "text\n"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["a.example.zone"]


def test_create_never_replaces_a_live_file_or_its_journal(tmp_path):
    path = str(tmp_path / "live.example.zone")
    zonefile.write_zone_file(path, "live\n")
    (tmp_path / "live.example.zone.jnl").write_bytes(b"journal")
    with pytest.raises(FileExistsError):
        zonefile.write_zone_file(path, "clobber\n")
    assert open(path).read() == "live\n"
    assert (tmp_path / "live.example.zone.jnl").read_bytes() == b"journal"
    assert sorted(os.listdir(tmp_path)) == ["live.example.zone", "live.example.zone.jnl"]
    zonefile.write_zone_file(path, "replaced\n", replace=True)
    assert open(path).read() == "replaced\n"


def test_crash_between_write_and_rename_leaves_only_a_temp_file(tmp_path):
    script = (f"import os, signal, sys; sys.path.insert(0, {ROOT!r}); import zonefile\n"
              "os.link = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"zonefile.write_zone_file({str(tmp_path / 'c.example.zone')!r}, 'x\\n')\n")
    done = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert done.returncode == -signal.SIGKILL
    left = os.listdir(tmp_path)
    assert len(left) == 1 and re.fullmatch(r"\.bindcar-[0-9a-f]{16}\.tmp", left[0])
    (tmp_path / "other.example.zone").write_text("keep")
    assert zonefile.remove_stale_temp_files(str(tmp_path)) == left
    assert os.listdir(tmp_path) == ["other.example.zone"]


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(OSError):
        zonefile.write_zone_file(str(tmp_path / "f.example.zone"), "x\n")
    assert os.listdir(tmp_path) == []
    with pytest.raises(UnicodeEncodeError):       # renderers only make ASCII; refuse otherwise
        monkeypatch.undo()
        zonefile.write_zone_file(str(tmp_path / "f.example.zone"), "é\n")
    assert os.listdir(tmp_path) == []


def test_remove_zone_files_takes_file_journal_and_signed_copies_only(tmp_path):
    for name in ("z.example.zone", "z.example.zone.jnl", "z.example.zone.jbk",
                 "z.example.zone.signed", "z.example.zone.signed.jnl", "y.z.example.zone",
                 "z.example.zone.bak"):
        (tmp_path / name).write_text("x")
    assert zonefile.remove_zone_files(str(tmp_path), "z.example") == [   # the file last:
        "z.example.zone.signed.jnl", "z.example.zone.signed", "z.example.zone.jbk",
        "z.example.zone.jnl", "z.example.zone"]             # a crash leaves it, not a journal
    assert sorted(os.listdir(tmp_path)) == ["y.z.example.zone", "z.example.zone.bak"]
    assert zonefile.remove_zone_files(str(tmp_path), "z.example") == []


def test_the_note_of_a_delete_names_its_zone_and_goes_with_unmark(tmp_path):
    zonefile.mark_deleting(str(tmp_path), "example.com")
    zonefile.mark_deleting(str(tmp_path), "x" * 60 + ".example")      # a long name too
    (tmp_path / (zonefile.DELETING_PREFIX + "junk")).write_text("not a note\n")
    assert zonefile.zones_being_deleted(str(tmp_path)) == ["example.com", "x" * 60 + ".example"]
    zonefile.unmark_deleting(str(tmp_path), "example.com")
    zonefile.unmark_deleting(str(tmp_path), "example.com")             # a second time: fine
    assert zonefile.zones_being_deleted(str(tmp_path)) == ["x" * 60 + ".example"]


def test_a_note_is_never_written_through_a_symbolic_link(tmp_path):
    target, note = tmp_path / "elsewhere", zonefile._deleting_path(str(tmp_path), "example.com")
    os.symlink(target, note)
    zonefile.mark_deleting(str(tmp_path), "example.com")
    assert not target.exists() and not os.path.islink(note)
    assert zonefile.zones_being_deleted(str(tmp_path)) == ["example.com"]
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(note)]    # no temporary file


# ------------------------------------------------------------------ the records API

def test_record_bodies_are_zone_config_records():
    record = zonefile.parse_record({"name": "WWW", "type": "a", "value": "192.0.2.1"},
                                   "example.com")
    assert record == zonefile.Record("www.example.com.", "A", 3600, "192.0.2.1")
    current, new = zonefile.parse_record_update(
        {"name": "@", "type": "MX", "currentValue": "a", "newValue": "b.example.net.",
         "priority": 5, "ttl": 60}, "example.com")
    assert (current.rdata, new.rdata, new.ttl) == ("5 a.example.com.", "5 b.example.net.", 60)
    assert zonefile.parse_record_removal({"name": "x", "type": "TXT"}, "example.com") == \
        ("x.example.com.", "TXT", None)
    assert zonefile.parse_record_removal({"name": "x", "type": "TXT", "value": "hi"},
                                         "example.com")[2] == '"hi"'


def test_rrsets_replace_delete_and_empty():
    changes = zonefile.parse_rrsets({"rrsets": [
        {"name": "a", "type": "A", "changetype": "replace", "records": ["192.0.2.1"] * 2},
        {"name": "b", "type": "TXT", "changetype": "REPLACE", "records": []},
        {"name": "c", "type": "MX", "changetype": "DELETE", "records": None}]}, "example.com")
    assert [(c.owner, c.type, c.ttl, c.values) for c in changes] == [
        ("a.example.com.", "A", 3600, ("192.0.2.1",)),
        ("b.example.com.", "TXT", 3600, None), ("c.example.com.", "MX", 3600, None)]


def test_listed_records_go_back_into_a_create():
    zone = "example.com"
    listed = [zonefile.listed_record(*r, zone) for r in (
        ("example.com.", "NS", 300, "ns1.example.com."),
        ("*.wild.example.com.", "TXT", 60, '"a" "b"'),
        ("_sip._tcp.example.com.", "SRV", 60, "1 5 5060 sip.example.net."),
        ("ns1.example.com.", "A", 300, "192.0.2.1"))]
    assert listed[0]["name"] == "@" and listed[1]["name"] == "*.wild"
    assert listed[2] == {"name": "_sip._tcp", "type": "SRV", "value": "5 5060 sip.example.net.",
                         "ttl": 60, "priority": 1}
    again = parse_zone(body({"zoneConfig.records": listed}))
    assert [(r.owner, r.type, r.ttl, r.rdata) for r in again.records] == [
        ("example.com.", "NS", 300, "ns1.example.com."),
        ("*.wild.example.com.", "TXT", 60, '"a" "b"'),
        ("_sip._tcp.example.com.", "SRV", 60, "1 5 5060 sip.example.net."),
        ("ns1.example.com.", "A", 300, "192.0.2.1")]


def test_a_patch_gives_an_explicit_allow_transfer_the_update_keys():
    shown = zonefile.parse_shown_zone(
        'zone "example.com" { type primary; file "/z/f"; allow-transfer { 192.0.2.9; }; '
        'allow-update { key "bindy-operator"; }; also-notify port 5353 { 192.0.2.9; }; };')
    clause = zonefile.patch_zone_clause(shown, parse_zone_update({"allowUpdate": []}))
    assert 'allow-transfer { 192.0.2.9; key "bindy-operator"; };' in clause
    assert "also-notify port 5353 { 192.0.2.9; };" in clause        # kept as it was
    clause = zonefile.patch_zone_clause(shown, parse_zone_update(
        {"allowUpdate": ["key other", "127.0.0.1"], "alsoNotify": ["192.0.2.8"]}))
    assert 'allow-update { key "bindy-operator"; key "other"; 127.0.0.1; };' in clause
    assert 'allow-transfer { 192.0.2.9; key "bindy-operator"; key "other"; };' in clause
    assert clause.count("also-notify") == 1



# ------------------------------------------------------------------ transfers to secondaries

def test_allow_transfer_is_judged_as_named_judges_it():
    address = ipaddress.ip_address("192.0.2.2")
    admits = zonefile.acl_admits
    assert admits(("192.0.2.2",), address) and admits(("192.0.2.0/24",), address)
    assert admits(("!192.0.2.2", "any"), address) is False
    assert admits(("192.0.2.9", 'key "xfr"'), address, "xfr")
    assert admits(('key "xfr"',), address) is False and admits(("none",), address) is False
    assert admits(("any",), address) and admits((), address) is False
    assert admits(("localnets",), address) is None
    assert admits(("{ 192.0.2.2; }",), address) and admits(("{ none; }", "any"), address)
    assert admits(("{ 192.0.2.9; }", 'key "xfr"'), address) is False


def test_the_transfer_key_is_added_and_addresses_are_defaults_only():
    plain = parse_zone(body())
    addresses = [ipaddress.ip_address("192.0.2.2")]
    assert zonefile.with_transfer_defaults(plain, None, addresses).allow_transfer == \
        ("{ 192.0.2.2; }",)                         # the group bindcar keeps in step
    assert zonefile.with_transfer_defaults(plain, None, []).allow_transfer == ("{ none; }",)
    assert zonefile.with_transfer_defaults(plain).allow_transfer is None
    assert zonefile.with_transfer_defaults(plain, "xfr", addresses).allow_transfer == \
        ('key "xfr"',)
    closed = plain._replace(allow_transfer=("none",))
    assert zonefile.with_transfer_defaults(closed, "xfr").allow_transfer == ('key "xfr"',)
    assert zonefile.with_transfer_defaults(closed, None, addresses).allow_transfer == ("none",)


def test_lists_named_shows_are_read_with_plain_addresses():
    shown = zonefile.parse_shown_zone(
        'zone "a.test" { type primary; file "a"; also-notify { 192.0.2.2 port 53; }; '
        'allow-transfer { 192.0.2.2/32; 10.0.0.0/8; key "k"; }; allow-query { { "none"; }; '
        '{ 192.0.2.3/32; }; "any"; }; };')
    assert zonefile.shown_list(shown, "allow-transfer") == ("192.0.2.2", "10.0.0.0/8", 'key "k"')
    assert zonefile.shown_list(shown, "allow-query") == ("{ none; }", "{ 192.0.2.3; }", "any")
    assert zonefile.shown_list(shown, "also-notify") == ("192.0.2.2 port 53",)
    assert zonefile.shown_list(shown, "allow-update") is None


# ------------------------------------------------------------------ external-dns endpoints

def endpoint(name, rtype, *targets, ttl=0, set_identifier=""):
    return zonefile.Endpoint(name, rtype, ttl, targets, set_identifier, {})


def test_an_endpoint_is_read_as_go_reads_it():
    """Keys without case, unknown keys and nulls ignored (external-dns's decoder)."""
    e = zonefile.parse_endpoint({"DNSName": "www.example.com", "Targets": ["192.0.2.1"],
                                 "recordtype": "A", "recordTTL": None, "extra": 1}, "create[0]")
    assert (e.name, e.type, e.ttl, e.targets, e.labels) == (
        "www.example.com", "A", 0, ("192.0.2.1",), {})


@pytest.mark.parametrize("item, field", [
    ({"dnsName": 1}, "create[0].dnsName"),
    ({"targets": "192.0.2.1"}, "create[0].targets"),
    ({"targets": [1]}, "create[0].targets"),
    ({"recordTTL": "60"}, "create[0].recordTTL"),
    ({"recordTTL": True}, "create[0].recordTTL"),
    ({"labels": {"owner": 1}}, "create[0].labels"),
    ({"providerSpecific": {}}, "create[0].providerSpecific"),
    ([], "create[0]"),
])
def test_an_endpoint_of_the_wrong_json_types_is_undecodable(item, field):
    with pytest.raises(zonefile.ZoneError) as e:
        zonefile.parse_endpoint(item, "create[0]")
    assert e.value.field == field


def test_an_endpoint_names_the_zone_that_is_its_longest_suffix():
    zones = {"example.com", "sub.example.com"}
    assert zonefile.endpoint_zone("a.sub.example.com", zones) == "sub.example.com"
    assert zonefile.endpoint_zone("Sub.Example.com.", zones) == "sub.example.com"
    assert zonefile.endpoint_zone("b.example.com", zones) == "example.com"
    assert zonefile.endpoint_zone("example.org", zones) is None
    with pytest.raises(zonefile.ZoneError):            # refused before it is split
        zonefile.endpoint_zone("a." * 20000 + "example.com", zones)


@pytest.mark.parametrize("given, expected", [
    (endpoint("WWW.Example.com", "a", "192.0.2.1", "192.0.2.1"),
     ("www.example.com.", "A", 3600, ("192.0.2.1",))),
    (endpoint("v6.example.com", "AAAA", "2001:DB8:0::1", ttl=60),
     ("v6.example.com.", "AAAA", 60, ("2001:db8::1",))),
    (endpoint("alias.example.com", "CNAME", "Target.Example.net"),
     ("alias.example.com.", "CNAME", 3600, ("target.example.net.",))),
    (endpoint("example.com", "MX", "10 mail.example.com"),
     ("example.com.", "MX", 3600, ("10 mail.example.com.",))),
    (endpoint("_sip._tcp.example.com", "SRV", "10 5 5060 sip.example.com."),
     ("_sip._tcp.example.com.", "SRV", 3600, ("10 5 5060 sip.example.com.",))),
    (endpoint("a-*.example.com", "TXT", '"heritage=external-dns"'),
     ("a-*.example.com.", "TXT", 3600, ('"\\"heritage=external-dns\\""',))),
    (endpoint("cname-abc-.example.com", "TXT", "x" * 300),
     ("cname-abc-.example.com.", "TXT", 3600, (f'"{"x" * 255}" "{"x" * 45}"',))),
])
def test_an_endpoint_becomes_records_as_the_records_api_makes_them(given, expected):
    assert zonefile.endpoint_records(given, "example.com") == expected


@pytest.mark.parametrize("given, field, words", [
    (endpoint("www.example.com", "NAPTR", "x"), "recordType", "not a type bindcar stores"),
    (endpoint("www.example.com", "A", "192.0.2.1", set_identifier="eu"), "setIdentifier",
     "routing policies"),
    (endpoint("example.com", "NS", "ns.example.net"), "recordType", "apex NS"),
    (endpoint("www.example.org", "A", "192.0.2.1"), "dnsName", "not inside the zone"),
    (endpoint("a-www.example.org", "TXT", "t"), "dnsName", "not inside the zone"),
    (endpoint("a-*.*.example.com", "TXT", "t"), "dnsName", "first label"),
    (endpoint("a b.example.com", "TXT", "t"), "dnsName", "may hold only"),
    (endpoint("under_score.example.com", "A", "192.0.2.1"), "dnsName", "check-names"),
    (endpoint("www.example.com", "A"), "targets", "has no value"),
    (endpoint("www.example.com", "A", "300.1.1.1"), "targets[0]", "not an IPv4"),
    (endpoint("c.example.com", "CNAME", "a.example.net", "b.example.net"), "targets",
     "one target"),
    (endpoint("www.example.com", "MX", "mail.example.com"), "targets[0]", "preference"),
    (endpoint("www.example.com", "TXT", "bell\x07"), "targets[0]", "control character"),
    (endpoint("www.example.com", "A", "192.0.2.1", ttl=-1), "recordTTL", "between"),
])
def test_an_endpoint_bindcar_can_never_apply_is_refused_naming_why(given, field, words):
    with pytest.raises(zonefile.ZoneError) as e:
        zonefile.endpoint_records(given, "example.com")
    assert e.value.field == field and words in e.value.message


def test_a_record_reads_back_as_the_target_external_dns_sent():
    target = zonefile.endpoint_target
    assert target("TXT", '"\\"heritage=external-dns\\""') == '"heritage=external-dns"'
    assert target("TXT", '"v=spf1 " "-all"') == "v=spf1 -all"
    assert target("CNAME", "Target.Example.NET.") == "target.example.net"
    assert target("MX", "10 Mail.Example.com.") == "10 mail.example.com"
    assert target("SRV", "10 5 5060 SIP.example.com.") == "10 5 5060 sip.example.com."
    assert target("CAA", "\\# 3 000000") is None


def test_targets_are_the_same_without_regard_to_order_case_or_txt_quotes():
    same = zonefile.same_targets
    assert same("A", ["192.0.2.2", "192.0.2.1"], ["192.0.2.1", "192.0.2.2"])
    assert same("CNAME", ["Target.example.net"], ["target.example.net."])
    assert same("TXT", ['"heritage=external-dns"'], ["heritage=external-dns"])
    assert not same("TXT", ["Heritage"], ["heritage"])
    assert not same("A", ["192.0.2.1"], ["192.0.2.1", "192.0.2.2"])
