"""bindcar as a drop-in under bindy: the bytes bindy sends, the settings of its sidecar,
and zones the Rust bindcar made, each against real named."""

import json
import os
import re
import subprocess
import time

import pytest

import bindcar as bindcar_module
import zonefile
from test_bindcar import CLOSED


# bindy's add_secondary_zone as the Rust structs serialise it (serde, camelCase, None
# options skipped), and the same with every optional field as an explicit null.
BINDY_SECONDARY = (
    '{"zoneName":"%(zone)s","zoneType":"secondary","zoneConfig":{"ttl":300,"soa":'
    '{"primaryNs":"placeholder.example.com.","adminEmail":"admin.example.com.","serial":1,'
    '"refresh":3600,"retry":600,"expire":604800,"negativeTtl":86400},"nameServers":[],'
    '"nameServerIps":{},"records":[],"primaries":[%(primaries)s]},'
    '"updateKeyName":"bindy-operator"}')
BINDY_SECONDARY_NULLS = (
    '{"zoneName":"%(zone)s","zoneType":"secondary","zoneConfig":{"ttl":300,"soa":'
    '{"primaryNs":"placeholder.example.com.","adminEmail":"admin.example.com.","serial":1,'
    '"refresh":3600,"retry":600,"expire":604800,"negativeTtl":86400},"nameServers":[],'
    '"nameServerIps":{},"records":[],"alsoNotify":null,"allowTransfer":null,'
    '"primaries":[%(primaries)s],"dnssecPolicy":null,"inlineSigning":null},'
    '"updateKeyName":"bindy-operator"}')
# bindy's add_primary_zone: TTL 300, the SOA of the DNSZone, no records, alsoNotify with
# the secondaries' DNS port, allowTransfer bare, its update key.
BINDY_PRIMARY = (
    '{"zoneName":"%(zone)s","zoneType":"primary","zoneConfig":{"ttl":300,"soa":'
    '{"primaryNs":"ns1.%(zone)s.","adminEmail":"admin.%(zone)s.","serial":2025010101,'
    '"refresh":3600,"retry":600,"expire":604800,"negativeTtl":86400},'
    '"nameServers":["ns1.%(zone)s."],"nameServerIps":{"ns1.%(zone)s.":"127.0.0.1"},'
    '"records":[],"alsoNotify":["127.0.0.2:5353"],"allowTransfer":["127.0.0.1"],'
    '"primaries":null,"dnssecPolicy":null,"inlineSigning":null},'
    '"updateKeyName":"update-key"}')
JSON = {"Content-Type": "application/json"}
POLL = 10.0                     # seconds a test waits for named to transfer a zone


def send(server, method, path, text):
    """The exact bytes of ``text`` as the body."""
    return server.request(method, path, text.encode(), headers=JSON)


def axfr(named, zone):
    """dig's whole output for an AXFR of ``zone`` from ``named``."""
    return subprocess.run(["dig", "@127.0.0.1", "-p", str(named.dns_port), "+tries=1",
                           "+time=2", zone, "AXFR"], capture_output=True, text=True,
                          timeout=10).stdout


def wait_for_serial(named, zone, timeout=POLL):
    """Poll ``named`` (bounded) until it answers the zone's SOA; the dig answer."""
    deadline = time.monotonic() + timeout
    while True:
        status, answer = named.dig(zone, "SOA")
        if status == "NOERROR" and answer or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.05)


# ------------------------------------------------------------------ bindy's bodies

def test_bindy_secondary_body_parses_with_its_real_primaries():
    for template in (BINDY_SECONDARY, BINDY_SECONDARY_NULLS):
        text = template % {"zone": "sec.example", "primaries":
                           '"10.244.1.82:5353","[fd00::1]:5353"'}
        zone = zonefile.parse_zone(json.loads(text))
        assert zone.type == "secondary" and zone.update_key is None and zone.soa is None
        assert zone.primaries == ("10.244.1.82 port 5353", "fd00::1 port 5353")
        assert zonefile.render_zone_clause(zone, "/z/sec.example.zone") == (
            '{ type secondary; file "/z/sec.example.zone"; '
            'primaries { 10.244.1.82 port 5353; fd00::1 port 5353; }; };')


def test_bindy_primary_and_secondary_make_a_working_pair(bindcar, named, make_named,
                                                         make_bindcar, unique):
    """bindy's primary body on one named, its secondary body on another: the zone
    transfers, and the secondary's status reads as bindy's existence check wants."""
    zone = f"{unique}.example"
    status, body, _ = send(bindcar, "POST", "/api/v1/zones", BINDY_PRIMARY % {"zone": zone})
    assert (status, body) == (201, {"success": True, "details": None,
                                    "message": f"Zone {zone} created successfully"})
    shown = named.client().call(f"showzone {zone}")
    assert 'allow-update { key "update-key"; }' in shown
    assert "also-notify { 127.0.0.2 port 5353; }" in shown
    # bindy's PATCH after a 409 carries ip:5353 too (the Rust bindcar answers 400 to it)
    status, _, _ = send(bindcar, "POST", "/api/v1/zones", BINDY_PRIMARY % {"zone": zone})
    assert status == 409
    status, body, _ = send(bindcar, "PATCH", f"/api/v1/zones/{zone}",
                           '{"alsoNotify":["127.0.0.3:5353"],"allowTransfer":["127.0.0.1"]}')
    assert (status, body["message"]) == (200, f"Zone {zone} modified successfully")

    secondary = make_named()
    other = make_bindcar(secondary)
    text = BINDY_SECONDARY % {"zone": zone, "primaries": f'"127.0.0.1:{named.dns_port}"'}
    status, body, _ = send(other, "POST", "/api/v1/zones", text)
    assert (status, body["message"]) == (201, f"Zone {zone} created successfully")
    shown = secondary.client().call(f"showzone {zone}")
    assert f"primaries {{ 127.0.0.1 port {named.dns_port}; }}" in shown
    assert "allow-update" not in shown                  # a secondary takes no updates
    assert wait_for_serial(secondary, zone)[1][0].split()[-5] == "2025010101"
    status, body, _ = other.request("GET", f"/api/v1/zones/{zone}/status")
    assert status == 200 and "serial: 2025010101" in body["details"]
    assert other.request("POST", f"/api/v1/zones/{zone}/retransfer")[0] == 200
    assert other.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


@pytest.mark.parametrize("template", [BINDY_SECONDARY, BINDY_SECONDARY_NULLS])
def test_secondary_before_its_first_transfer_reads_as_existing(bindcar, named, unique,
                                                               template):
    zone = f"{unique}.example"
    text = template % {"zone": zone, "primaries": f'"127.0.0.1:{CLOSED}","[::1]:{CLOSED}"'}
    assert send(bindcar, "POST", "/api/v1/zones", text)[0] == 201
    status, body, _ = bindcar.request("GET", f"/api/v1/zones/{zone}/status")
    assert (status, body["success"], body["message"]) == (
        200, True, f"Zone {zone} status retrieved")
    assert body["details"].splitlines() == [
        f"name: {zone}", "type: secondary",
        f"files: {os.path.join(bindcar.zone_dir, zone)}.zone",
        "loaded: no (waiting for the first transfer from its primaries)"]
    status, info, _ = bindcar.request("GET", f"/api/v1/zones/{zone}")
    assert (status, info["name"], info["zoneType"], "serial" in info) == (
        200, zone, "secondary", False)
    assert send(bindcar, "POST", "/api/v1/zones", text)[0] == 409       # bindy: "already there"
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert bindcar.request("GET", f"/api/v1/zones/{zone}/status")[0] == 404


def test_an_empty_allow_transfer_closes_the_zone(bindcar, named, unique):
    """bindy sends allowTransfer: [] for a primary without secondaries: that must mean
    no one, not named 9.18's default (any host); no one but the update key, which may
    read what it may change (GET .../records)."""
    zone = f"{unique}.example"
    text = (BINDY_PRIMARY % {"zone": zone}).replace('"allowTransfer":["127.0.0.1"]',
                                                    '"allowTransfer":[]')
    assert send(bindcar, "POST", "/api/v1/zones", text)[0] == 201
    assert 'allow-transfer  { key "update-key"; }' in named.client().call(f"showzone {zone}")
    assert "Transfer failed" in axfr(named, zone)
    assert "XFR size" in axfr(named, "static.test")            # named's default lets any in
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


def test_unknown_empty_lists_and_maps_pass_in_a_create_only():
    """Rust clients serialise a new list or map field as [] or {} when it is empty."""
    zone = zonefile.parse_zone(json.loads(
        (BINDY_PRIMARY % {"zone": "n.example"}).replace(
            '"records":[]', '"records":[],"futureList":[],"futureMap":{}').replace(
            '{"zoneName"', '{"futureTop":[],"zoneName"')))
    assert zone.name == "n.example"
    with pytest.raises(zonefile.ZoneError) as e:
        zonefile.parse_zone_update({"allowTransfer": [], "futureList": []})
    assert e.value.field == "futureList"


def test_records_on_a_secondary_are_refused_saying_why(bindcar, unique):
    text = BINDY_SECONDARY.replace('"records":[]', '"records":[{"name":"www","type":"A",'
                                   '"value":"192.0.2.1"}]')
    status, body, _ = send(bindcar, "POST", "/api/v1/zones",
                           text % {"zone": f"{unique}.example",
                                   "primaries": f'"127.0.0.1:{CLOSED}"'})
    assert (status, body["field"]) == (400, "zoneConfig.records")
    assert "zone transfer" in body["error"]


@pytest.mark.parametrize("anchor, field", [
    ('{"zoneName"', "futureField"), ('"zoneConfig":{', "zoneConfig.futureField"),
    ('"soa":{', "zoneConfig.soa.futureField"),
    ('"records":[{', "zoneConfig.records[0].futureField")])
def test_unknown_fields_pass_as_null_and_fail_with_a_value(bindcar, named, unique, anchor,
                                                          field):
    """A newer client's optional field, serialised as null, is accepted at every level;
    the same field with a value is refused, naming it (a typo must not pass)."""
    zone = f"{unique}.example"
    base = (BINDY_PRIMARY % {"zone": zone}).replace(
        '"records":[]', '"records":[{"name":"www","type":"A","value":"192.0.2.1",'
                        '"priority":null,"ttl":null}]')
    if anchor.startswith("{"):
        with_null = base.replace(anchor, '{"futureField":null,' + anchor[1:], 1)
    else:
        with_null = base.replace(anchor, anchor + '"futureField":null,', 1)
    assert with_null.count("futureField") == 1
    status, body, _ = send(bindcar, "POST", "/api/v1/zones", with_null)
    assert status == 201, body
    assert named.dig(f"www.{zone}")[1][0].endswith("192.0.2.1")
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    with_value = with_null.replace('"futureField":null', '"futureField":1')
    status, body, _ = send(bindcar, "POST", "/api/v1/zones", with_value)
    assert (status, body["field"]) == (400, field)
    assert body["error"] == f"{field}: unknown field 'futureField'"
    assert bindcar.request("GET", f"/api/v1/zones/{zone}")[0] == 404


def test_patch_takes_unknown_null_fields_and_refuses_valued_ones(bindcar, unique):
    zone = f"{unique}.example"
    assert send(bindcar, "POST", "/api/v1/zones", BINDY_PRIMARY % {"zone": zone})[0] == 201
    assert send(bindcar, "PATCH", f"/api/v1/zones/{zone}",
                '{"allowTransfer":["127.0.0.1"],"notifySource":null}')[0] == 200
    status, body, _ = send(bindcar, "PATCH", f"/api/v1/zones/{zone}",
                           '{"allowTransfer":["127.0.0.1"],"notifySource":"x"}')
    assert (status, body["field"]) == (400, "notifySource")
    assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


# ------------------------------------------------------------------ bindy's sidecar settings

def bindy_rndc_conf(directory, port, secret, key_name="bindy-operator"):
    """bindy's rndc.conf template, with its key file under keys/ as bindy mounts it."""
    keys = directory / "keys"
    keys.mkdir()
    (keys / "rndc.key").write_text(f'key "{key_name}" {{\n    algorithm hmac-sha256;\n'
                                   f'    secret "{secret}";\n}};\n')
    os.chmod(keys / "rndc.key", 0o600)
    conf = directory / "rndc.conf"
    conf.write_text(f"""\
# RNDC client configuration for bindy operator
include "{keys}/rndc.key";

options {{
    default-server 127.0.0.1;
    default-port {port};
    default-key "bindy-operator";
}};

server 127.0.0.1 {{
    key "bindy-operator";
    port {port};
}};
""")
    return str(conf)


def test_bindy_sidecar_settings_take_the_port_from_rndc_conf(make_bindcar, named, tmp_path):
    """bindy sets RNDC_SECRET and RNDC_ALGORITHM, not RNDC_SERVER, and mounts an rndc.conf
    whose port is not 953: each setting comes from its own place."""
    conf = bindy_rndc_conf(tmp_path, named.control_port, named.secrets["hmac-sha256"])
    server = make_bindcar(named, RNDC_SERVER=None, RNDC_CONF=conf,
                          RNDC_SECRET=named.secrets["hmac-sha256"], RNDC_ALGORITHM="hmac-sha256",
                          RUST_LOG="info", TMPDIR="/tmp", NSUPDATE_PORT="5353",
                          BIND_TOKEN_AUDIENCES="bindcar")
    assert server.request("GET", "/api/v1/server/status")[0] == 200
    start = [r for r in server.log_records() if r["message"] == "starting"][0]
    assert start["rndc_server"] == f"127.0.0.1:{named.control_port}"
    assert start["rndc_sources"] == {"server": conf, "port": conf,
                                     "algorithm": "RNDC_ALGORITHM", "secret": "RNDC_SECRET"}
    assert named.secrets["hmac-sha256"] not in server.log_text()


def test_records_under_bindy_use_its_rndc_key_as_the_update_key(own_named, make_bindcar,
                                                                tmp_path, unique):
    """bindy gives no NSUPDATE_* but the port; its RNDC key, named in the rndc.conf, is the
    updateKeyName of every zone it creates: record changes just work."""
    named, secret = own_named, own_named.secrets["hmac-sha256"]
    named.extra_conf = f'key "bindy-operator" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    named._write_conf()
    named.client().call("reconfig")
    conf = bindy_rndc_conf(tmp_path, named.control_port, secret)
    server = make_bindcar(named, RNDC_SERVER=None, RNDC_CONF=conf, RNDC_SECRET=secret,
                          RNDC_ALGORITHM="hmac-sha256", NSUPDATE_KEY_NAME=None,
                          NSUPDATE_PORT=str(named.dns_port))
    start = [r for r in server.log_records() if r["message"] == "starting"][0]
    assert (start["update_key"], start["update_sources"]["key"]) == ("bindy-operator",
                                                                     "RNDC key")
    zone = f"{unique}.example"
    text = (BINDY_PRIMARY % {"zone": zone}).replace('"update-key"', '"bindy-operator"')
    assert send(server, "POST", "/api/v1/zones", text)[0] == 201
    status, body, _ = server.request("POST", f"/api/v1/zones/{zone}/records",
                                     {"name": "www", "type": "A", "value": "192.0.2.80"})
    assert status == 201, body
    assert named.dig(f"www.{zone}")[1][0].endswith("192.0.2.80")
    status, body, _ = server.request("GET", f"/api/v1/zones/{zone}/records?name=www")
    assert status == 200 and body["records"][0]["value"] == "192.0.2.80"


def test_rndc_conf_at_a_default_path_is_read_for_what_the_variables_leave(tmp_path,
                                                                          monkeypatch):
    conf = bindy_rndc_conf(tmp_path, 9530, "c2VjcmV0", key_name="another-name")
    monkeypatch.setattr(bindcar_module, "RNDC_CONF_PATHS", (str(tmp_path / "none"), conf))
    env = {"RNDC_SECRET": "c2VjcmV0", "RNDC_ALGORITHM": "sha512", "BIND_API_TOKEN": "t"}
    config = bindcar_module.load_config(env)
    assert (config.rndc_host, config.rndc_port, config.rndc_algorithm) == (
        "127.0.0.1", 9530, "hmac-sha512")
    assert config.rndc_sources == {"server": conf, "port": conf,
                                   "algorithm": "RNDC_ALGORITHM", "secret": "RNDC_SECRET"}
    config = bindcar_module.load_config(dict(env, RNDC_SERVER="127.0.0.2"))
    assert (config.rndc_host, config.rndc_port) == ("127.0.0.2", 9530)    # port: the file's
    config = bindcar_module.load_config(dict(env, RNDC_SERVER="127.0.0.2:1953"))
    assert (config.rndc_host, config.rndc_port) == ("127.0.0.2", 1953)
    assert config.rndc_sources["port"] == "RNDC_SERVER"


def test_rndc_settings_fall_back_to_defaults_and_an_unreadable_default_file_warns(
        tmp_path, monkeypatch):
    unreadable = tmp_path / "rndc.key"
    unreadable.mkdir()                                  # exists, cannot be read as a file
    monkeypatch.setattr(bindcar_module, "RNDC_CONF_PATHS", (str(unreadable),))
    config = bindcar_module.load_config({"RNDC_SECRET": "c2VjcmV0", "BIND_API_TOKEN": "t"})
    assert (config.rndc_host, config.rndc_port, config.rndc_algorithm) == (
        "127.0.0.1", 953, "hmac-sha256")
    assert config.rndc_sources == {"server": "default", "port": "default",
                                   "algorithm": "default", "secret": "RNDC_SECRET"}
    assert len(config.warnings) == 1 and str(unreadable) in config.warnings[0]
    with pytest.raises(bindcar_module.ConfigError, match="RNDC_CONF"):
        bindcar_module.load_config({"BIND_API_TOKEN": "t"})     # the key was needed from it
    with pytest.raises(bindcar_module.ConfigError, match="RNDC_CONF"):
        bindcar_module.load_config({"RNDC_SECRET": "c2VjcmV0", "BIND_API_TOKEN": "t",
                                    "RNDC_CONF": str(unreadable)})   # named explicitly


def test_a_key_the_file_cannot_give_does_not_cost_its_port(tmp_path, monkeypatch):
    """With the secret in RNDC_SECRET, bindy's include of a key file bindcar cannot read
    (or a key it cannot use) leaves the rest of the rndc.conf in force."""
    conf = bindy_rndc_conf(tmp_path, 9530, "c2VjcmV0")
    os.unlink(tmp_path / "keys" / "rndc.key")
    env = {"RNDC_SECRET": "c2VjcmV0", "BIND_API_TOKEN": "t", "RNDC_CONF": conf}
    config = bindcar_module.load_config(env)
    assert (config.rndc_host, config.rndc_port, config.rndc_algorithm) == (
        "127.0.0.1", 9530, "hmac-sha256")
    (tmp_path / "keys" / "rndc.key").write_text(
        'key "bindy-operator" { algorithm hmac-sha3; secret "x"; };\n')
    assert bindcar_module.load_config(env).rndc_port == 9530
    with pytest.raises(bindcar_module.ConfigError, match="RNDC_CONF: .*bindy-operator"):
        bindcar_module.load_config({"BIND_API_TOKEN": "t", "RNDC_CONF": conf})  # key needed


# ------------------------------------------------------------------ RUST_LOG

@pytest.mark.parametrize("text, level, warned", [
    ("info", "info", False), ("debug", "debug", False), ("TRACE", "debug", False),
    ("off", "off", False), ("bindcar=debug,tower_http=warn", "debug", False),
    ("warn,bindcar=error", "error", False), ("tower_http=debug", "info", False),
    ("bindcar", "debug", False), ("bind=warn", "warn", False),       # targets match by prefix
    ("bindcar=error,bind=debug", "error", False), ("bind=debug,bindcar=error", "error", False),
    ("bindcar::rndc=debug", "info", False),            # a module of the Rust one, not ours
    ("bindcar[request{id=1}]=debug", "debug", False), ("3", "info", False),
    ("hyper", "info", False), ("error,bindcar=off", "off", False),
    ("loud", "info", False),                           # a target, as tracing reads it
    ("bindcar=loud", "info", True), ("=debug", "info", True), ("a b=info", "info", True),
    ("bindcar=", "info", True), ("x=1=2", "info", True),
])
def test_rust_log_is_read_as_tracing_reads_it(text, level, warned):
    config = bindcar_module.load_config({"RUST_LOG": text, "RNDC_SECRET": "c2VjcmV0",
                                         "RNDC_SERVER": "127.0.0.1:953",
                                         "RNDC_ALGORITHM": "sha256", "BIND_API_TOKEN": "t"})
    assert config.log_level == level
    assert bool(config.warnings) == warned


def test_rust_log_never_stops_bindcar(make_bindcar, named):
    server = make_bindcar(named, RUST_LOG="bindy's level: verbose!")
    warnings = [r for r in server.log_records() if r["level"] == "warn"]
    assert warnings and warnings[0]["message"].startswith("RUST_LOG: ignored")
    server = make_bindcar(named, RUST_LOG="warn,bindcar=debug")
    server.request("GET", "/api/v1/health")             # the line is written after the answer
    deadline = time.monotonic() + 5
    while not any(r["level"] == "debug" and r.get("path") == "/api/v1/health"
                  for r in server.log_records()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server = make_bindcar(named, RUST_LOG="off")
    server.request("GET", "/api/v1/zones")
    assert server.stop() == 0 and server.log_text() == ""


def test_log_level_stays_strict(make_bindcar, named):
    server = make_bindcar(named, start=False, LOG_LEVEL="bindcar=debug", RUST_LOG="info")
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    assert server.log_text().startswith("bindcar: LOG_LEVEL='bindcar=debug': must be")


# ------------------------------------------------------------------ zones the Rust bindcar made

def test_zones_the_rust_bindcar_made_stay_manageable(bindcar, named, make_named, make_bindcar,
                                                     tmp_path, unique):
    """Its BIND_ZONE_DIR may be a symbolic link (it resolves it); its secondaries have no
    file clause at all. A secondary from named.conf stays out of reach all the same."""
    from test_bindcar import zone_body
    conf_zone, rust_secondary = f"{unique}-conf.example", f"{unique}-sec.example"
    for zone in (conf_zone, rust_secondary):        # primaries on the shared named
        assert bindcar.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    primaries = f"primaries {{ 127.0.0.1 port {named.dns_port}; }};"
    other = make_named(extra_conf=f'zone "{conf_zone}" {{ type secondary; {primaries} }};\n'
                              f'zone "{unique}-cu.example" {{ type secondary; primaries {{ '
                              f'127.0.0.1 port {CLOSED}; }}; }};\n')
    real, link = tmp_path / "real", tmp_path / "zones"
    real.mkdir()
    link.symlink_to(real)
    rndc = other.client()
    resolved, through_link = f"{unique}-p.example", f"{unique}-l.example"
    for zone, directory in ((resolved, real), (through_link, link)):
        (real / f"{zone}.zone").write_text(
            f"$TTL 300\n@ IN SOA ns1.{zone}. admin.{zone}. 1 3600 600 604800 86400\n"
            f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n")
        rndc.call(f'addzone {zone} {{ type primary; file "{directory}/{zone}.zone"; '
                  'allow-update { key "update-key"; }; };')
    unloaded, conf_unloaded = f"{unique}-u.example", f"{unique}-cu.example"
    rndc.call(f'addzone {rust_secondary} {{ type secondary; {primaries} '
              'allow-update { key "update-key"; }; };')
    rndc.call(f'addzone {unloaded} {{ type secondary; primaries {{ 127.0.0.1 port {CLOSED}; }}; '
              'allow-update { key "update-key"; }; };')
    assert wait_for_serial(other, rust_secondary)[0] == "NOERROR"
    assert wait_for_serial(other, conf_zone)[0] == "NOERROR"
    server = make_bindcar(other, zone_dir=str(link))
    for zone in (resolved, through_link, rust_secondary):
        status, body, _ = server.request("PATCH", f"/api/v1/zones/{zone}",
                                         {"alsoNotify": ["127.0.0.2"]})
        assert status == 200, (zone, body)
        assert "also-notify { 127.0.0.2; }" in rndc.call(f"showzone {zone}")
        assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200, zone
        assert other.dig(zone, "SOA")[0] == "REFUSED"
    # Before its first transfer named cannot tell a run-time zone from named.conf's:
    # no PATCH then; a delete removes what serves nothing and has nothing on disk.
    for zone in (unloaded, conf_unloaded):
        status, body, _ = server.request("PATCH", f"/api/v1/zones/{zone}",
                                         {"alsoNotify": ["127.0.0.2"]})
        assert status == 409 and "is not loaded, so named cannot tell" in body["error"]
        assert "also-notify" not in rndc.call(f"showzone {zone}")
    assert server.request("DELETE", f"/api/v1/zones/{unloaded}")[0] == 200
    assert not os.listdir(real) or set(os.listdir(real)) <= {bindcar_module.LOCK_FILE}
    for method, body in (("DELETE", None), ("PATCH", {"alsoNotify": ["127.0.0.2"]})):
        status, answer, _ = server.request(method, f"/api/v1/zones/{conf_zone}", body)
        assert (status, answer["error"]) == (409, f"Zone {conf_zone} is not managed by bindcar "
                                                  f"(named.conf's, or its file is not "
                                                  f"{conf_zone}.zone in bindcar's zone "
                                                  "directory)")
    assert wait_for_serial(other, conf_zone)[0] == "NOERROR"
    for zone in (conf_zone, rust_secondary):
        assert bindcar.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


# ------------------------------------------------------------------ shapes, /ready, docs

def test_health_carries_the_version_and_zone_responses_always_carry_details(bindcar, unique):
    for path in ("/health", "/api/v1/health"):
        assert bindcar.request("GET", path, token=None)[:2] == (
            200, {"status": "healthy", "version": bindcar_module.VERSION})
    zone = f"{unique}.example"
    assert send(bindcar, "POST", "/api/v1/zones", BINDY_PRIMARY % {"zone": zone})[0] == 201
    for method, action in (("POST", "notify"), ("POST", "freeze"), ("POST", "thaw"),
                           ("GET", "status"), ("DELETE", None)):
        path = f"/api/v1/zones/{zone}" + (f"/{action}" if action else "")
        status, body, _ = bindcar.request(method, path)
        assert status == 200 and set(body) == {"success", "message", "details"}, action
        assert body["details"] is None or body["details"].strip()


def test_ready_reveals_no_internals(make_bindcar, own_named, tmp_path):
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    server = make_bindcar(own_named, zone_dir=str(zone_dir), RNDC_TIMEOUT="2")
    own_named.stop()
    os.rename(zone_dir, tmp_path / "moved")
    deadline = time.monotonic() + 5
    while True:                     # the answer is cached for a second
        status, body, resp = server.request("GET", "/ready", token=None)
        if len(body["checks"]) == 2 and body["checks"][0].endswith("not writable") or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (status, body) == (503, {"ready": False, "checks": [
        "zone directory: not writable", "rndc: unreachable"]})
    text = json.dumps(body)
    for secret in (str(own_named.control_port), "127.0.0.1", "rndc-", str(tmp_path)):
        assert secret not in text
    logged = [r for r in server.log_records() if r["message"] == "not ready: rndc"]
    assert len(logged) == 1 and str(own_named.control_port) in logged[0]["error"]
    logged = [r for r in server.log_records() if r["message"] == "not ready: zone directory"]
    assert len(logged) == 1 and str(zone_dir) in logged[0]["error"]


def test_docs_page_is_self_contained_and_complete(make_bindcar, named, bindcar):
    assert bindcar.request("GET", "/api/v1/docs", token=None)[0] == 404      # off by default
    server = make_bindcar(named, BIND_ENABLE_DOCS="true")
    status, page, resp = server.request("GET", "/api/v1/docs", token=None)
    assert status == 200 and resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert resp.getheader("Content-Security-Policy") == "default-src 'none'; style-src 'unsafe-inline'"
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|src=|https?://", page, re.I)
    status, doc, _ = server.request("GET", "/api/v1/openapi.json", token=None)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(set(ids)) == len(ids) == len(bindcar_module.App.ROUTES)
    for method, template, handler, *_ in bindcar_module.App.ROUTES:
        operation = doc["paths"][template][method.lower()]["operationId"]
        section = page.split(f"<h2 id={operation}>", 1)[1].split("<h2", 1)[0]
        assert f"{method}</span><code>{template}</code>" in section
        summary, status_code, _, request, errors = bindcar_module.API_DOCS[handler]
        for code in (status_code, *(e[0] if isinstance(e, tuple) else e for e in errors), 500):
            assert f"<td>{code}</td>" in section, (handler, code)
        if request:
            assert "<code>zoneConfig.primaries</code>" in section or request != "CreateZone"
            assert "<code>alsoNotify</code>" in section or request != "ModifyZone"
    assert "<code>zoneConfig.records[].priority</code>" in page
    assert doc["paths"]["/api/v1/docs"]["get"]["operationId"] == "docs"
