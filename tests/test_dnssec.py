"""DNSSEC: a zone signed by named (dnssec-policy default), its keys as named reports them,
its DNSKEYs, and DS records computed here, byte-equal to dnssec-dsfromkey's."""

import subprocess

import pytest

from test_bindcar import zone_body
from test_catalog import poll
from test_records import KEY


def dnssec(server, zone):
    status, body, _ = server.request("GET", f"/api/v1/zones/{zone}/dnssec")
    assert status == 200, body
    return body


@pytest.fixture
def signed(bindcar, unique):
    zone = f"{unique}-sig.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(
        zone, key=KEY, dnssecPolicy="default", inlineSigning=True))[0] == 201
    poll(lambda: dnssec(bindcar, zone).get("dnskeys"), 20, "named to sign the zone")
    return zone


def test_a_signed_zone_shows_its_keys_and_the_ds_its_parent_needs(bindcar, named, signed):
    body = dnssec(bindcar, signed)
    assert body["signed"] is True and body["policy"] == "default"
    (key,) = body["keys"]
    assert key["role"] == "CSK" and key["algorithm"] == "ECDSAP256SHA256"
    assert {"published", "keySigning", "zoneSigning", "goal", "dnskey", "ds", "zoneRrsig",
            "keyRrsig", "rollover"} <= set(key)
    (dnskey,) = body["dnskeys"]
    assert dnskey["tag"] == key["tag"] and dnskey["flags"] == 257 and dnskey["algorithm"] == 13
    # dnssec-dsfromkey, from the DNSKEY as dig shows it: the same DS, byte for byte.
    _, answers = named.dig(signed, "DNSKEY")
    keyset = "\n".join(answers) + "\n"
    expected = []
    for digest in ("SHA-256", "SHA-384"):
        out = subprocess.run(["dnssec-dsfromkey", "-a", digest, "-f", "-", signed],
                             input=keyset, capture_output=True, text=True, check=True).stdout
        expected += [" ".join(line.split()[3:]) for line in out.splitlines() if " DS " in line]
    assert [ds["record"] for ds in body["ds"]] == expected
    assert [ds["digestType"] for ds in body["ds"]] == [2, 4]


def test_an_unsigned_zone_says_so_and_an_unknown_one_is_404(bindcar, unique):
    zone = f"{unique}.example"
    assert bindcar.request("POST", "/api/v1/zones", zone_body(zone, key=KEY))[0] == 201
    assert dnssec(bindcar, zone) == {"zone": zone, "signed": False}
    assert bindcar.request("GET", f"/api/v1/zones/none-{zone}/dnssec")[0] == 404


def test_checkds_tells_named_the_parent_has_the_ds(bindcar, signed):
    tag = dnssec(bindcar, signed)["keys"][0]["tag"]
    path = f"/api/v1/zones/{signed}/dnssec/checkds"
    status, body, _ = bindcar.request("POST", path, {"published": True, "key": tag})
    assert status == 200 and str(tag) in (body["details"] or ""), body
    status, body, _ = bindcar.request("POST", path, {"published": True,
                                                     "key": (tag + 1) % 65536})
    assert status == 409 and "no matching key" in body["error"]
    for bad, field in (({}, "published"), ({"published": True, "withdrawn": True}, "published"),
                       ({"published": True, "key": 70000}, "key"), ({"published": "yes"},
                                                                     "published")):
        status, body, _ = bindcar.request("POST", path, bad)
        assert status == 400 and body["field"] == field, (bad, body)
