"""README tells the truth: its tables match the code."""

import os
import re

import bindcar
from conftest import ROOT, free_port

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def table_after(heading):
    """The cells of the first table in the section under ``heading``."""
    section = re.split(r"\n#+ ", README.split(heading, 1)[1], maxsplit=1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


def test_every_setting_is_in_readme_with_its_default():
    rows = {row[0].strip("`"): row[1] for row in table_after("## Configuration")}
    assert set(rows) == {name for name, *_ in bindcar.SETTINGS}
    for name, default, _, _ in bindcar.SETTINGS:
        if default is not None:
            assert rows[name] == f"`{default}`", name
        elif name != "RNDC_CONF":
            assert rows[name] == "—", name


def test_every_route_is_in_readme():
    documented = set()
    for row in table_after("## Endpoints"):
        first, *more = re.findall(r"`([^`]+)`", row[0])
        method, path = first.split(" ")
        for path in [path, *more]:
            documented.add((method, path))
    routes = {(method, template) for method, template, *_ in bindcar.App.ROUTES}
    assert documented == routes


def test_readme_keeps_its_two_commands():
    assert "make demo" in README and "make test" in README


def test_try_it_runs_as_printed_against_a_live_bindcar(own_named, make_named, make_bindcar):
    """README's walk-through, top to bottom, on the demo's setup (a catalog, and a
    secondary that follows it): every curl must succeed, and the secondary may transfer
    every zone the walk-through makes."""
    import subprocess
    from test_catalog import poll, secondary_conf
    block = README.split("### Try it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    options, zone = secondary_conf("catalog.demo.test", own_named)
    secondary = make_named(extra_options=options, extra_conf=zone)
    webhook = f"127.0.0.1:{free_port()}"
    server = make_bindcar(own_named, BIND_CATALOG_ZONE="catalog.demo.test",
                          BIND_SECONDARIES=f"127.0.0.1:{secondary.dns_port}",
                          WEBHOOK_ADDRESS=webhook)
    poll(lambda: server.request("GET", "/api/v1/catalog")[0] == 200, 20, "the catalog")
    prelude = ('set -euo pipefail\n'
               'curl() { command curl -sS --fail-with-body --max-time 30 "$@"; echo; }\n')
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "T": server.env["BIND_API_TOKEN"],
           "B": f"http://127.0.0.1:{server.port}", "D": str(own_named.dns_port),
           "W": f"http://{webhook}"}
    run = subprocess.run(["bash", "-c", prelude + block], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    added = [line for line in own_named.log_tail(2000).splitlines()
             if "command 'addzone \"example.com\"" in line]
    assert len(added) == 1 and "allow-transfer { { 127.0.0.1; }; " in added[0], added
    for text in ("Zone example.com created successfully", "\n192.0.2.10\n", "\n192.0.2.20\n",
                 "Record updated in zone example.com", "Records changed in zone example.com",
                 '{"name":"api","type":"TXT","value":"\\"v=1\\"","ttl":3600}',
                 "Zone example.com reloaded successfully",
                 "loaded: no (waiting for the first transfer from its primaries)",
                 "Zone example.org deleted successfully", "Zone example.com deleted successfully",
                 '{"include":["example.com"]}', '{"dnsName":"www.example.com","targets":'
                 '["192.0.2.11","192.0.2.12"],"recordType":"A","recordTTL":60}', "\n192.0.2.30\n"):
        assert text in out, out
    # health, ready, metrics, server status, the zone list, one zone and one record listing
    # answer in shapes of their own, as do the webhook's three calls
    assert block.count("curl -s") == out.count('"success":true') + 10
