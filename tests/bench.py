"""bindcar's benchmark: prints figures, asserts nothing.  Run: make bench

Everything runs against a private named on loopback started here, so the
figures in one run compare like with like.
"""

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import NamedServer  # noqa: E402

import zonefile  # noqa: E402

ROUNDS = {"status": 3000, "zonestatus": 3000, "addzone+delzone": 500}
PROCESS_ROUNDS = 60             # a new `rndc` process each time is slow: fewer rounds
MAX_SECONDS = 60                # per measurement, whatever the round count


def measure(fn, rounds):
    """Times of ``fn(i)`` in milliseconds, for at most ``rounds`` calls or MAX_SECONDS."""
    times, stop = [], time.monotonic() + MAX_SECONDS
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
        if time.monotonic() > stop:
            break
    return times


def summary(times):
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, len(ordered)


def zone_file(named, zone):
    with open(os.path.join(named.dir, f"{zone}.zone"), "w") as f:
        f.write(f"$TTL 300\n@ SOA ns1.{zone}. admin.{zone}. 1 3600 600 604800 300\n"
                f"@ NS ns1.{zone}.\nns1 A 127.0.0.1\n")
    return f"{zone}.zone"


def bench_rndc(named, rows):
    client = named.client()
    client.call("status")
    rndc = ["rndc", "-c", named.rndc_conf]
    kept = {
        "status": lambda i: client.call("status"),
        "zonestatus": lambda i: client.call("zonestatus static.test"),
    }
    spawned = {
        "status": lambda i: subprocess.run(rndc + ["status"], capture_output=True, check=True),
        "zonestatus": lambda i: subprocess.run(rndc + ["zonestatus", "static.test"],
                                               capture_output=True, check=True),
    }
    for kind, runs in (("kept", ROUNDS["addzone+delzone"]), ("spawned", PROCESS_ROUNDS)):
        for i in range(runs):
            zone_file(named, f"{kind}{i}.bench")

    def add_del(i):
        client.call(f'addzone kept{i}.bench {{ type primary; file "kept{i}.bench.zone"; }};')
        client.call(f"delzone kept{i}.bench")

    def add_del_rndc(i):
        subprocess.run(rndc + ["addzone", f"spawned{i}.bench",
                               f'{{ type primary; file "spawned{i}.bench.zone"; }};'],
                       capture_output=True, check=True)
        subprocess.run(rndc + ["delzone", f"spawned{i}.bench"], capture_output=True, check=True)

    kept["addzone+delzone"], spawned["addzone+delzone"] = add_del, add_del_rndc
    for name in ROUNDS:
        ours = summary(measure(kept[name], ROUNDS[name]))
        theirs = summary(measure(spawned[name], PROCESS_ROUNDS))
        rows.append((f"rndc {name}", ours, theirs, theirs[0] / ours[0]))


def zone_body(records):
    kinds = [("A", "192.0.2.{}"), ("AAAA", "2001:db8::{:x}"), ("TXT", "text number {}"),
             ("MX", "10 mail{}.example.com."), ("CNAME", "target{}.example.com.")]
    return {"zoneName": "bench.example", "zoneType": "primary", "zoneConfig": {
        "ttl": 3600, "soa": {"primaryNs": "ns1.bench.example.", "adminEmail": "admin@bench.example"},
        "nameServers": ["ns1.bench.example."], "nameServerIps": {"ns1.bench.example.": "192.0.2.1"},
        "records": [{"name": f"h{i}", "type": kinds[i % 5][0],
                     "value": kinds[i % 5][1].format(i % 250 + 1)} for i in range(records)]}}


def bench_zonefile(rows):
    with tempfile.TemporaryDirectory() as d:
        for size, rounds in ((10, 2000), (10_000, 10)):
            body = zone_body(size)
            zone = zonefile.parse_zone(body)
            text = zonefile.render_zone_file(zone)
            path = os.path.join(d, "bench.example.zone")
            parse = summary(measure(lambda i: zonefile.parse_zone(body), rounds))
            render = summary(measure(lambda i: zonefile.render_zone_file(zone), rounds))
            both = summary(measure(lambda i: zonefile.render_zone_file(
                zonefile.parse_zone(body)), rounds))
            write = summary(measure(lambda i: zonefile.write_zone_file(path, text, replace=True),
                                    min(rounds, 200)))
            rows.append((f"zone {size} records: parse", parse, None, None))
            rows.append((f"zone {size} records: render", render, None, None))
            rows.append((f"zone {size} records: parse+render", both, None, None))
            rows.append((f"zone {size} records: write+fsync", write, None, None))


def main():
    rows = []
    bench_zonefile(rows)
    with tempfile.TemporaryDirectory() as d:
        named = NamedServer(d).start()
        try:
            bench_rndc(named, rows)
        finally:
            named.stop()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"{subprocess.run(['named', '-v'], capture_output=True, text=True).stdout.strip()}")
    print(f"{'operation':<34} {'ours p50':>10} {'ours p99':>10} {'n':>6}   "
          f"{'baseline p50':>12} {'p99':>8} {'n':>5}  {'speed-up':>8}")
    for name, (p50, p99, n), baseline, ratio in rows:
        line = f"{name:<34} {p50:>8.3f}ms {p99:>8.3f}ms {n:>6}"
        if baseline:
            b50, b99, bn = baseline
            line += f"   {b50:>10.3f}ms {b99:>6.2f}ms {bn:>5}  {ratio:>7.0f}x"
        print(line)
    print("ours: RndcClient on one kept-open connection; baseline: a new ISC `rndc` process each time")


if __name__ == "__main__":
    main()
