"""make demo: a private named and bindcar on loopback, with curl commands to try.

Stops both on Ctrl-C.  Nothing outside a temporary directory is touched.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import Bindcar, NamedServer, free_port  # noqa: E402
from test_catalog import poll, secondary_conf  # noqa: E402

ROOT = os.path.dirname(HERE)

ZONE = {
    "zoneName": "demo.test", "zoneType": "primary", "updateKeyName": "update-key",
    "zoneConfig": {
        "ttl": 300,
        "soa": {"primaryNs": "ns1.demo.test.", "adminEmail": "admin@demo.test"},
        "nameServers": ["ns1.demo.test."],
        "nameServerIps": {"ns1.demo.test.": "127.0.0.1"},
        "records": [{"name": "www", "type": "A", "value": "192.0.2.10"},
                    {"name": "@", "type": "MX", "value": "mail.demo.test.", "priority": 10},
                    {"name": "mail", "type": "A", "value": "192.0.2.25"}],
    },
}
CATALOG = "catalog.demo.test"
RECORD = {"name": "api", "type": "A", "value": "192.0.2.20", "ttl": 300}
UPDATE = {"name": "api", "type": "A", "currentValue": "192.0.2.20", "newValue": "192.0.2.21"}


def main():
    with tempfile.TemporaryDirectory(prefix="bindcar-demo-") as d:
        for part in ("primary", "secondary", "zones"):
            os.mkdir(os.path.join(d, part))
        named = NamedServer(os.path.join(d, "primary"), notify="explicit").start()
        options, zone = secondary_conf(CATALOG, named)
        # The secondary starts first, as a pod may: its first refresh of the catalog
        # fails; bindcar's NOTIFYs, repeated until it has the catalog, bring it along.
        secondary = NamedServer(os.path.join(d, "secondary"), options, zone).start()
        zone_dir = os.path.join(d, "zones")
        webhook = f"127.0.0.1:{free_port()}"
        server = Bindcar(named, zone_dir, BIND_API_TOKEN=secrets.token_urlsafe(18),
                         BIND_ENABLE_DOCS="true", BIND_CATALOG_ZONE=CATALOG,
                         BIND_SECONDARIES=f"127.0.0.1:{secondary.dns_port}",
                         WEBHOOK_ADDRESS=webhook).start()
        token = server.env["BIND_API_TOKEN"]
        poll(lambda: server.request("GET", "/api/v1/catalog", token=token)[0] == 200, 20,
             "bindcar to make the catalog zone")
        base = f"http://127.0.0.1:{server.port}"
        records = "/api/v1/zones/demo.test/records"
        made = [server.request("POST", "/api/v1/zones", ZONE, token=token),
                server.request("POST", records, RECORD, token=token)]
        poll(lambda: secondary.dig("api.demo.test")[1], 20, "the secondary to serve it")
        digs = {port: subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short",
                                      "api.demo.test"], capture_output=True, text=True,
                                     timeout=10).stdout.strip()
                for port in (named.dns_port, secondary.dns_port)}
        print(f"""named (primary): 127.0.0.1, DNS port {named.dns_port}, control port \
{named.control_port}; it knows the TSIG key update-key
named (secondary): 127.0.0.1, DNS port {secondary.dns_port}; it follows the catalog {CATALOG}
bindcar: {base} (token {token}), log in {server.log_path}; it changes records with update-key
API docs: {base}/api/v1/docs
external-dns's webhook: http://{webhook} (--webhook-provider-url)

Done through the API just now:
  POST /api/v1/zones demo.test: {made[0][0]} {json.dumps(made[0][1])}
  POST {records} {json.dumps(RECORD)}: {made[1][0]} {json.dumps(made[1][1])}
  dig @127.0.0.1 -p {named.dns_port} +short api.demo.test (the primary): {digs[named.dns_port]}
  dig @127.0.0.1 -p {secondary.dns_port} +short api.demo.test (the secondary): \
{digs[secondary.dns_port]}

In another terminal, set these and run README's walk-through ("Try it"), or e.g.:

  export B={base} T={token} D={named.dns_port} W=http://{webhook}
  curl -s -H "Authorization: Bearer $T" $B/api/v1/zones
  curl -s -H "Authorization: Bearer $T" $B{records}
  curl -s -H "Authorization: Bearer $T" -X PUT -H 'Content-Type: application/json' \\
       -d '{json.dumps(UPDATE)}' $B{records}
  dig @127.0.0.1 -p $D +short api.demo.test
  dig @127.0.0.1 -p {secondary.dns_port} +short api.demo.test
  curl -s -H "Authorization: Bearer $T" $B/api/v1/catalog
  curl -s -H "Authorization: Bearer $T" $B/api/v1/zones/demo.test/propagation
  curl -s -H "Authorization: Bearer $T" -X DELETE $B/api/v1/zones/demo.test

  python3 {os.path.join(ROOT, 'rndc_proto.py')} -c {named.rndc_conf} status

Press Ctrl-C to stop.""", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.wait(1):            # until Ctrl-C
                pass
        finally:
            server.stop()
            secondary.stop()
            named.stop()
            print("stopped.")


if __name__ == "__main__":
    main()
