#!/usr/bin/env python3
"""Chaos: bindcar under load while named and bindcar are killed, named is frozen and the
zone directory fills up, checked against a ledger its clients keep.

    python3 tests/chaos.py --seed 7 --seconds 300      # or: make chaos CHAOS_SECONDS=300
    python3 tests/chaos.py --seconds 3600 --kills 300  # until 300 kills, an hour at most

A primary named driven by bindcar (which keeps a catalog zone) and a secondary named that
follows the catalog run on loopback in a private directory; the zone directory is a small
tmpfs, so that it can be filled.  Each round, client threads create, delete and PATCH the
zones of a pool of POOL names and change their records, while two or three faults strike at
seeded moments (half the kills and freezes aimed a few ms after a create or delete went
out); then the load stops, every process is made to run, and the invariants are polled,
each within a bound, against the ledger.

Every answer is acknowledged (2xx), refused (4xx, and 507: README says nothing was
written) or unknown (another 5xx, a timeout, a lost connection).  Requests are serialised
per zone name, so what a zone holds is well-defined: a set of candidate states, which an
unknown outcome doubles and each check's observation collapses.  The invariants:

 1. an acknowledged create, not deleted since, is served by named and listed;
 2. an acknowledged delete, not undone by a create, left nothing in named, the list or
    the zone directory;
 3. no orphans: what named holds is listed and has its file, what is listed is in named,
    each file belongs to a zone; an unknown outcome leaves a whole zone or none;
 4. the catalog's members are the managed primaries (by AXFR, and GET /api/v1/catalog
    reports no missing member and no orphan);
 5. each zone's records and also-notify are what the acknowledged changes made, an
    unknown change being there whole or not at all;
 6. no 500, no request past its timeout, /ready within READY_LIMIT of each restart, no
    process exiting by itself;
 7. the secondary serves the primary's zones with the same serials and records;
 8. a 503 only while named or bindcar is disrupted: README's 503 says named cannot be
    reached, and a full zone directory is a 507.

A seed replays the faults and each client's choices, not the threads' interleaving.
"""

import argparse
import collections
import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import TOKEN, Bindcar, NamedServer  # noqa: E402  (it puts the root on the path)
import dns_proto  # noqa: E402
import rndc_proto  # noqa: E402
from test_bindcar import zone_body  # noqa: E402
from test_catalog import secondary_conf  # noqa: E402

POOL = [f"z{i:02d}.chaos.test" for i in range(30)]  # few names: deletes meet re-creates
CATALOG = "catalog.chaos.test"
KEY = "update-key"
OWNERS = {"r0": "A", "r1": "A", "r2": "A", "t0": "TXT", "t1": "TXT"}   # records we change
NOTIFY = ("notify", "127.0.0.2")     # the fact "a PATCH put 127.0.0.2 in also-notify"
FAULTS = ("SIGKILL bindcar", "SIGKILL named", "SIGSTOP named", "disk full")
WEIGHTS = (3, 3, 1, 1)          # how often each strikes: kills are what the run is for
KILLS = FAULTS[:2]
OUTCOMES = ("ack", "refused", "unknown", "lost", "timeout", "unsent")
WORKERS = 5
REQUEST_TIMEOUT = 15.0          # seconds; a request past it is a violation
READY_LIMIT = 5.0               # seconds from a restart to /ready 200
READY_WAIT = 20.0               # seconds we wait for it all the same
GRACE = 2.0                     # seconds after /ready in which a 503 is still expected
SETTLE = 20.0                   # seconds invariants 1 to 5 may take to hold
CONVERGE = 30.0                 # seconds the secondary may take to follow
NUDGE_AFTER = 10.0              # seconds before a zone it has not followed gets a refresh
REFRESH_HELP = False            # --refresh-help: `rndc refresh` on the secondary, as before
                                # bindcar NOTIFYed the secondaries itself
LOAD_SECONDS = (5.0, 9.0)       # of load per round
MIN_ROUND = 4.0                 # seconds a round needs: no new round with less left
AIM = 0.012                     # an aimed fault strikes at most this long after the request
MAX_WORLDS = 16                 # candidate states a zone may have before clients leave it
TMPFS_SIZE = "16m"
FILLER = ".chaos-filler"

Entry = collections.namedtuple("Entry", "n round worker zone op t0 t1 status outcome note")
Seen = collections.namedtuple("Seen", "shown path served serial facts error",
                              defaults=[None] * 6)
Violation = collections.namedtuple("Violation", "number round text detail")
PRINT = threading.Lock()


def say(text):
    with PRINT:
        print(text, flush=True)


def poll(check, seconds, interval=0.05):
    """``check()`` until it is true, for at most ``seconds``; its last value."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


class Unsent(Exception):
    """bindcar refused the connection: the request never reached it."""


def call(port, method, path, body=None, timeout=REQUEST_TIMEOUT, token=TOKEN):
    """(status, parsed JSON or text) of one request, on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        body, headers["Content-Type"] = json.dumps(body), "application/json"
    try:
        try:
            conn.connect()
        except ConnectionRefusedError:
            raise Unsent() from None
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def outcome_of(status):
    """2xx acknowledged; 4xx and 507 (README: "nothing was written") refused; else unknown."""
    if 200 <= status < 300:
        return "ack"
    return "refused" if 400 <= status < 500 or status == 507 else "unknown"


def log_lines(path, needle, k=3, noise=("control channel command", "AXFR st", "AXFR en")):
    """The last ``k`` lines of a log's last 2 MiB that mention ``needle``, without what
    the checks themselves make named log."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - (1 << 21)))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return [f"    {os.path.basename(path)}: {line[:300]}" for line in lines
            if needle in line and not any(n in line for n in noise)][-k:]


def first_line(path):
    try:
        with open(path, "rb") as f:
            return f.readline(200).decode(errors="replace").strip()
    except OSError:
        return ""


def percentile(values, p):
    """Nearest rank of sorted ``values``: ``percentile([1, 2, 3, 4], 50)`` is 2."""
    return values[max(0, -(-len(values) * p // 100) - 1)]


# ---------------------------------------------------------------- the model

def apply(world, change):
    """A zone's state after one change: None is no zone, else a frozenset of (owner, value).

    >>> sorted(apply(frozenset({("r0", "10.0.0.1"), ("t0", "v1")}), ("set", "r0", ("10.0.0.2",))))
    [('r0', '10.0.0.2'), ('t0', 'v1')]
    """
    kind = change[0]
    if kind in ("create", "delete"):
        return frozenset() if kind == "create" else None
    owner = change[1]
    if kind == "add":
        return world | {(owner, change[2])}
    if kind == "remove":
        return world - {(owner, change[2])}
    return frozenset(f for f in world if f[0] != owner) | {(owner, v) for v in change[2]}


class Zone:
    """What the ledger says one pool name holds: every state the unknown outcomes since the
    last check allow.  ``broken``/``lagging``: a violation reported, whose zone the clients
    (or the secondary's check) leave alone until it is whole again."""

    def __init__(self):
        self.worlds = {None}
        self.busy = False
        self.broken = self.lagging = None

    def certain(self):
        return len({w is None for w in self.worlds}) == 1

    def expected(self):
        if self.certain():
            return "present" if None not in self.worlds else "absent"
        return "present or absent (an unknown outcome), but whole"

    def settle(self, changes, outcome):
        after = set()
        for world in self.worlds:
            for change in changes:
                world = apply(world, change)
            after.add(world)
        if outcome == "ack":
            self.worlds = after
        elif outcome != "refused":
            self.worlds |= after


def fresh(rtype, n):
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" if rtype == "A" else f"v{n}"


def plan(name, worlds, rng, values, secondary):
    """The requests a client sends to ``name`` next: [(label, method, path, body, changes)].
    Each succeeds in every candidate state; the second of a pair goes only when the first
    is acknowledged (a delete, then at once a create of the same name)."""
    zone_path, records = f"/api/v1/zones/{name}", f"/api/v1/zones/{name}/records"
    create = ("create", "POST", "/api/v1/zones", zone_body(name, key=KEY), [("create",)])
    if worlds == {None}:
        return [create]
    common = frozenset.intersection(*worlds)
    held = sorted(f for f in common if f[0] in OWNERS)
    owner = rng.choice(sorted(OWNERS))
    rtype, n = OWNERS[owner], next(values)
    crowded = max(sum(f[0] == owner for f in w) for w in worlds) >= 4
    r = rng.random()
    if r < 0.07:
        delete = ("delete", "DELETE", zone_path, None, [("delete",)])
        return [delete, create] if rng.random() < 0.6 else [delete]
    if r < 0.15:
        extra = NOTIFY not in common
        body = {"alsoNotify": [f"127.0.0.1:{secondary}"] + [NOTIFY[1]] * extra}
        return [(f"PATCH zone notify={extra}", "PATCH", zone_path, body,
                 [("set", "notify", (NOTIFY[1],) * extra)])]
    if r >= 0.76:
        return [batch(records, rng, values)]
    if r < 0.45 and not crowded or not held:
        body = {"name": owner, "type": rtype, "value": fresh(rtype, n), "ttl": 300}
        return [(f"add {owner} {body['value']}", "POST", records, body,
                 [("add", owner, body["value"])])]
    owner, value = rng.choice(held)
    rtype = OWNERS[owner]
    if r < 0.62:
        return [(f"remove {owner} {value}", "DELETE", records,
                 {"name": owner, "type": rtype, "value": value}, [("remove", owner, value)])]
    if r < 0.70:
        body = {"name": owner, "type": rtype, "currentValue": value,
                "newValue": fresh(rtype, n), "ttl": 300}
        return [(f"replace {owner} {value} {body['newValue']}", "PUT", records, body,
                 [("remove", owner, value), ("add", owner, body["newValue"])])]
    return [(f"remove {owner}", "DELETE", records, {"name": owner, "type": rtype},
             [("set", owner, ())])]


def batch(path, rng, values):
    """A PATCH of one to three record sets, each replaced (fresh values) or deleted."""
    rrsets, changes = [], []
    for owner in rng.sample(sorted(OWNERS), rng.randint(1, 3)):
        new = tuple(fresh(OWNERS[owner], next(values)) for _ in range(rng.randint(0, 2)))
        rrsets.append({"name": owner, "type": OWNERS[owner], "ttl": 300,
                       "changetype": "REPLACE" if new else "DELETE",
                       **({"records": list(new)} if new else {})})
        changes.append(("set", owner, new))
    label = "batch " + " ".join(f"{c[1]}={','.join(c[2]) or '-'}" for c in changes)
    return label, "PATCH", path, {"rrsets": rrsets}, changes


class Ledger:
    """Every request and its answer, in order of completion, also by zone name."""

    def __init__(self, start):
        self.start, self.lock = start, threading.Lock()
        self.entries, self.by_zone = [], collections.defaultdict(list)
        self.outcomes, self.refusals = collections.Counter(), collections.Counter()

    def add(self, round_, worker, zone, op, t0, status, outcome, note):
        with self.lock:
            entry = Entry(len(self.entries) + 1, round_, worker, zone, op, t0 - self.start,
                          time.monotonic() - self.start, status, outcome, note)
            self.entries.append(entry)
            self.by_zone[zone].append(entry)
            self.outcomes[outcome] += 1
            if outcome == "refused":
                self.refusals[(op.split()[0], status, note.replace(zone, "{zone}"))] += 1
        return entry

    def unsent(self):
        with self.lock:
            self.outcomes["unsent"] += 1

    def last(self, zone):
        return (self.by_zone.get(zone) or [None])[-1]

    def tail(self, zone, upto=None, k=5):
        """``zone``'s last ``k`` entries (up to entry ``upto``), and the last creates and
        deletes before them."""
        entries = [e for e in self.by_zone.get(zone, []) if upto is None or e.n <= upto]
        lives = [e for e in entries[:-k] if e.op in ("create", "delete")][-3:]
        return [f"    #{e.n} r{e.round} w{e.worker} +{e.t0:.3f}..{e.t1:.3f}s {e.zone} "
                f"{e.op} -> {e.status or '-'} {e.outcome} {e.note[:110]!r}"
                for e in lives + entries[-k:]]


# ---------------------------------------------------------------- the processes

class Cluster:
    """The primary named, bindcar and the secondary, in ``root``; each stopped by its PID."""

    def __init__(self, root):
        self.zone_dir = os.path.join(root, "zones")
        for sub in ("zones", "primary", "secondary"):
            os.mkdir(os.path.join(root, sub))
        self.mounted = False
        self.primary = NamedServer(os.path.join(root, "primary"), notify="explicit")
        options, conf = secondary_conf(CATALOG, self.primary)
        self.secondary = NamedServer(os.path.join(root, "secondary"), options, conf)
        self.bindcar = Bindcar(self.primary, self.zone_dir, BIND_CATALOG_ZONE=CATALOG,
                               BIND_SECONDARIES=f"127.0.0.1:{self.secondary.dns_port}",
                               RNDC_TIMEOUT="2", NSUPDATE_TIMEOUT="2",
                               MAX_CONNECTIONS_PER_CLIENT="256")

    def start(self):
        """A tmpfs for the zone directory when root may mount one; the catalog made before
        the secondary starts (one whose first transfer failed waits for its retry)."""
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755",
                               "chaos-zones", self.zone_dir], capture_output=True, text=True)
        self.mounted = done.returncode == 0
        if not self.mounted:
            say(f"no tmpfs ({done.stderr.strip()}): the disk-full fault is skipped")
        self.primary.start()
        self.bindcar.start()
        if not poll(lambda: self.request("GET", "/api/v1/catalog")[0] == 200, 20):
            raise RuntimeError(f"bindcar kept no catalog:\n{self.bindcar.log_text()[-3000:]}")
        self.secondary.start()

    def request(self, method, path, timeout=5.0, token=TOKEN):
        try:
            return call(self.bindcar.port, method, path, None, timeout, token)
        except (OSError, http.client.HTTPException, Unsent) as e:
            return None, repr(e)

    def ready(self):
        return self.request("GET", "/api/v1/ready", timeout=2.0, token=None)[0] == 200

    def rss_kb(self):
        try:
            with open(f"/proc/{self.bindcar.proc.pid}/status") as f:
                return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
        except (OSError, StopIteration, ValueError):
            return None

    def fill(self):
        """Write the filler until the zone directory is full (ENOSPC), in MiBs, then in
        pages for what is left; bounded by the tmpfs's size."""
        with open(os.path.join(self.zone_dir, FILLER), "wb", buffering=0) as f:
            for size in (1 << 20, 4096):
                for _ in range(64):
                    try:
                        f.write(b"\0" * size)
                    except OSError:             # ENOSPC
                        break

    def unfill(self):
        try:
            os.unlink(os.path.join(self.zone_dir, FILLER))
        except FileNotFoundError:
            pass

    def dns(self, named, signed=True):
        key = (KEY, "hmac-sha256", named.secrets["hmac-sha256"]) if signed else (None,)
        return dns_proto.DnsClient("127.0.0.1", named.dns_port, *key, timeout=3.0)

    def close(self, keep):
        """Everything we started, stopped by its PID, even half-way through a fault."""
        for named in (self.primary, self.secondary):
            if named.alive():
                named.proc.send_signal(signal.SIGCONT)
        for stop in (self.bindcar.stop, self.primary.stop, self.secondary.stop, self.unfill):
            try:
                stop()
            except Exception as e:              # noqa: BLE001  the rest must still stop
                say(f"cleanup: {stop.__qualname__}: {e!r}")
        if self.mounted:
            if keep:
                shutil.copytree(self.zone_dir, self.zone_dir + "-at-end", symlinks=True)
            if subprocess.run(["umount", self.zone_dir]).returncode:
                subprocess.run(["umount", "-l", self.zone_dir])


# ---------------------------------------------------------------- the checks

class Checker:
    """Invariants 1 to 5 and 7: what named, bindcar, the zone directory and the secondary
    hold, against the ledger's model; then the model becomes what is there."""

    def __init__(self, run):
        self.run, self.cluster, self.zones = run, run.cluster, run.zones
        self.read_to = 0                        # how far the secondary's log was read

    def check(self):
        """Observe until invariants 1 to 5 hold, or SETTLE passed: then they are broken."""
        deadline = time.monotonic() + SETTLE
        while True:
            look = self.observe()
            problems = self.problems(*look)
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for key, (number, text, zones) in problems.items():
            self.run.violate(number, key, text, zones)
        self.resync(look)
        self.follow(look[3])

    def observe(self):
        """bindcar's list and catalog, the zone directory, the catalog's members, and for
        every pool name named's configuration, SOA and records."""
        c = self.cluster
        listed, catalog = c.request("GET", "/api/v1/zones"), c.request("GET", "/api/v1/catalog")
        files = set(os.listdir(c.zone_dir))
        dns = c.dns(c.primary)
        try:
            with c.primary.client(timeout=3.0) as rndc:
                seen = {name: self.see(name, rndc, dns) for name in POOL}
            try:
                members = {r.value.rstrip(".") for r in dns.axfr(CATALOG)
                           if r.type == "PTR" and ".zones." in r.name}
            except dns_proto.DnsError as e:
                members = repr(e)
        finally:
            dns.close()
        return listed, catalog, files, seen, members

    @staticmethod
    def see(name, rndc, dns):
        try:
            shown = rndc.call(f"showzone {name}")
        except rndc_proto.RndcCommandError as e:
            if e.err != "not found":
                return Seen(error=f"showzone: {e.err}")
            shown = None
        except rndc_proto.RndcError as e:
            return Seen(error=f"showzone: {e}")
        path = (re.search(r'file "([^"]*)"', shown or "") or [None, None])[1]
        try:
            soa = [r for r in dns.query(name, "SOA") if r.type == "SOA"]
        except dns_proto.DnsUpdateError:            # REFUSED, SERVFAIL: not served
            soa = []
        except dns_proto.DnsError as e:
            return Seen(shown, path, error=f"SOA query: {e}")
        if not soa:
            return Seen(shown, path, False)
        cut = len(name) + 2
        try:
            facts = {(r.name[:-cut], r.value.strip('"')) for r in dns.axfr(name)
                     if r.name[:-cut] in OWNERS and r.type in ("A", "TXT")}
        except dns_proto.DnsError as e:
            return Seen(shown, path, error=f"AXFR: {e}")
        facts |= {NOTIFY} if shown and NOTIFY[1] in shown else set()
        return Seen(shown, path, True, int(soa[0].value.split()[2]), frozenset(facts))

    def state(self, name, listed, files, seen):
        """'present', 'absent', 'leftover' (the files of a request cut by a kill of
        bindcar, which README leaves for its next start or create) or 'half: ...'."""
        if seen.error:
            return f"half: cannot be seen: {seen.error}"
        parts = {"in named": seen.shown is not None, "served": seen.served,
                 "listed": name in listed, "file": f"{name}.zone" in files}
        extra = sorted(f for f in files if f.startswith(f"{name}.zone."))
        own = seen.path == os.path.join(self.cluster.zone_dir, f"{name}.zone")
        if all(parts.values()) and own:
            return "present"
        if not any(parts.values()) and not extra:
            return "absent"
        last = self.run.ledger.last(name)
        if not any(list(parts.values())[:3]) and last and last.outcome == "lost":
            return "leftover"
        return "half: " + ", ".join(f"{p} {'yes' if v else 'no'}" for p, v in parts.items()) \
            + "".join(f", {f}" for f in extra) + ("" if own or not seen.path else
                                                  f", named's file {seen.path}")

    def problems(self, listed, catalog, files, seen, members):
        """{key: (invariant, text, zones)} of one observation, for the zones not broken."""
        if listed[0] != 200:
            return {(6, "list"): (6, f"GET /api/v1/zones answered {listed}", ())}
        found, listed = {}, set(listed[1]["zones"])
        whole = {n for n in POOL if not self.zones[n].broken}
        for name in sorted(whole):
            zone, s = self.zones[name], seen[name]
            state = self.state(name, listed, files, s)
            expect = {w is not None for w in zone.worlds}
            if state.startswith("half"):
                number = 3 if len(expect) > 1 else 1 if True in expect else 2
                found[(number, name, "half")] = (number, f"{name} is half a zone "
                                                 f"({state[6:]}); the ledger says "
                                                 f"{zone.expected()}", [name])
            elif (state == "present") not in expect:
                number = 2 if state == "present" else 1
                found[(number, name, state)] = (number, f"{name} is {state}; the ledger "
                                                f"says {zone.expected()}", [name])
            elif state == "present" and s.facts not in zone.worlds:
                near = min((w for w in zone.worlds if w is not None),
                           key=lambda w: len(w ^ s.facts))
                found[(5, name, "records")] = (
                    5, f"{name}: records differ: missing {sorted(near - s.facts)}, "
                    f"unexpected {sorted(s.facts - near)} ({len(zone.worlds)} states "
                    "allowed)", [name])
        known = {f"{n}.zone{x}" for n in POOL for x in ("", ".jnl", ".jbk")} | {
            f"{CATALOG}.catalog", f"{CATALOG}.catalog.jnl", ".bindcar.lock", FILLER}
        for f in sorted(files - known):
            text = first_line(os.path.join(self.cluster.zone_dir, f))
            found[(3, "file", f)] = (3, f"a file no zone explains: {f} ({text!r})",
                                     [n for n in POOL if n in text])
        if catalog[0] != 200:
            found[(4, "catalog")] = (4, f"GET /api/v1/catalog answered {catalog}", ())
        elif (wrong := {*catalog[1]["missing"], *catalog[1]["orphans"]}) & whole:
            found[(4, "report")] = (4, f"GET /api/v1/catalog: missing {catalog[1]['missing']}"
                                       f", orphans {catalog[1]['orphans']}", sorted(wrong))
        if isinstance(members, str):
            found[(4, "axfr")] = (4, f"the catalog cannot be read: {members}", ())
        elif diff := sorted((members ^ listed) & whole):
            found[(4, "members")] = (4, f"catalog members and managed primaries differ: "
                                        f"members only {sorted(members - listed)}, "
                                        f"listed only {sorted(listed - members)}", diff)
        return found

    def resync(self, look):
        """The model becomes what is there; a half zone is left alone from now on (its
        violation reported) until it is whole again."""
        listed, _, files, seen, _ = look
        if listed[0] != 200:
            return
        for name, zone in self.zones.items():
            state = self.state(name, set(listed[1]["zones"]), files, seen[name])
            if state.startswith("half"):
                zone.broken = zone.broken or state
                continue
            if zone.broken:
                say(f"note: {name} is whole again ({state}): the clients use it again")
                zone.broken = None
            if state == "leftover":
                self.run.notes["files of a request cut by a kill of bindcar, left"] += 1
            zone.worlds = {seen[name].facts} if state == "present" else {None}

    # -- invariant 7

    def follow(self, seen):
        """The secondary serves the primary's zones with their serials and records; a zone
        still behind after NUDGE_AFTER gets help from ``nudge``."""
        began, nudged = time.monotonic(), {}
        sec = self.cluster.dns(self.cluster.secondary, signed=False)
        try:
            while True:
                diff = {n: d for n in POOL if not self.zones[n].broken
                        for d in [self.differs(n, seen[n], sec)] if d}
                for name in POOL:
                    if self.zones[name].lagging and name not in diff:
                        self.zones[name].lagging = None
                behind = {n: d for n, d in diff.items() if not self.zones[n].lagging}
                if not behind or time.monotonic() - began > CONVERGE:
                    break
                if time.monotonic() - began > NUDGE_AFTER:
                    self.nudge(behind, nudged)
                time.sleep(0.25)
        finally:
            sec.close()
        for name, text in behind.items():
            self.zones[name].lagging = text
            self.run.violate(7, (7, name, text.split(":")[0]), f"{name}: {text}", [name],
                             log_lines(self.cluster.secondary.log_path, name))

    @staticmethod
    def differs(name, s, sec):
        try:
            soa = [r for r in sec.query(name, "SOA") if r.type == "SOA"]
        except dns_proto.DnsError:
            soa = []
        theirs = int(soa[0].value.split()[2]) if soa else None
        if theirs != s.serial:
            how = ("it does not serve the zone" if theirs is None else
                   "the primary does not serve it" if s.serial is None else
                   "higher: it serves an older zone of this name" if theirs > s.serial else
                   "behind")
            return f"serial: primary {s.serial}, secondary {theirs} ({how})"
        if theirs is None:
            return None
        facts, ours = set(), s.facts - {NOTIFY}
        for owner, rtype in OWNERS.items():
            try:
                facts |= {(owner, r.value.strip('"'))
                          for r in sec.query(f"{owner}.{name}", rtype) if r.type == rtype}
            except dns_proto.DnsError as e:
                return f"records: the secondary does not answer ({e})"
        if facts != ours:
            return (f"records: the same serial {theirs}, but the secondary lacks "
                    f"{sorted(ours - facts)} and has {sorted(facts - ours)}")
        return None

    def nudge(self, behind, nudged):
        """A restart when named has cached the primary as unreachable (a refused transfer
        does that, from BIND 9.18.18 on, for every zone and for minutes); with
        --refresh-help, also `rndc refresh` on the secondary, once every NUDGE_AFTER for
        each zone behind.  By default bindcar's own NOTIFYs must bring every zone."""
        secondary, now = self.cluster.secondary, time.monotonic()
        with open(secondary.log_path, "rb") as f:
            f.seek(self.read_to)
            cached = b"is unreachable (cached)" in f.read()
            self.read_to = f.tell()
        if cached and now - nudged.get("", 0) >= NUDGE_AFTER:
            nudged[""] = now
            self.run.notes["restarts of the secondary: it cached the primary as unreachable"] += 1
            secondary.restart()
            self.read_to = os.path.getsize(secondary.log_path)
            return
        if not REFRESH_HELP:
            return
        with secondary.client(timeout=3.0) as rndc:
            for name in [CATALOG, *sorted(behind)]:
                if now - nudged.get(name, 0) >= NUDGE_AFTER:
                    nudged[name] = now
                    self.run.notes["`rndc refresh` of a zone the secondary had not followed"] += 1
                    try:
                        rndc.call(f"refresh {name}")
                    except rndc_proto.RndcError:
                        pass                    # not there yet: the catalog's refresh adds it


# ---------------------------------------------------------------- a run

class Run:
    """Rounds of load and faults, each checked; the ledger, the model and the findings."""

    def __init__(self, seed, cluster):
        self.seed, self.cluster = seed, cluster
        self.rng = random.Random(seed)
        self.start = time.monotonic()
        self.ledger = Ledger(self.start)
        self.zones = {name: Zone() for name in POOL}
        self.lock = threading.Lock()
        self.values = itertools.count(1)
        self.round = 0
        self.load_stop = threading.Event()
        self.zone_op, self.zone_op_sent = threading.Event(), None   # a create or delete went
        self.windows, self.full = [], []    # [start, end]: named or bindcar disrupted; full
        self.violations, self.counts = {}, collections.Counter()
        self.faults, self.notes = collections.Counter(), collections.Counter()
        self.recoveries, self.rss, self.harness_errors = [], [], []

    def now(self):
        return time.monotonic() - self.start

    def violate(self, number, key, text, zones=(), detail=(), upto=None):
        """Report a violation once per key (its repeats are counted), with the ledger's
        tail for each zone and what named's and bindcar's logs say of it."""
        with self.lock:
            self.counts[key] += 1
            if key in self.violations:
                return
            self.violations[key] = None
        detail = [line for zone in zones for line in self.ledger.tail(zone, upto)] + [*detail]
        for zone in zones if number != 7 else ():
            detail += log_lines(self.cluster.primary.log_path, zone, 2)
            detail += log_lines(self.cluster.bindcar.log_path, f'"zone":"{zone}"', 2)
        self.violations[key] = Violation(number, self.round, text, detail)
        say(f"VIOLATION {number} (seed {self.seed}, round {self.round}): {text}" +
            "".join("\n" + line for line in detail))

    # -- load

    def worker(self, i):
        rng = random.Random(self.seed * 1000 + i)
        while not self.load_stop.is_set():
            with self.lock:
                free = [n for n, z in self.zones.items() if not z.busy and not z.broken
                        and z.certain() and len(z.worlds) <= MAX_WORLDS]
                name = rng.choice(free) if free else None
                if name:
                    self.zones[name].busy = True
            if name is None:
                self.load_stop.wait(0.02)
                continue
            try:
                for step in plan(name, self.zones[name].worlds, rng, self.values,
                                 self.cluster.secondary.dns_port):
                    if self.send(i, name, *step) != "ack" or self.load_stop.is_set():
                        break
            except Exception:                   # noqa: BLE001  the harness's own fault
                self.harness_errors.append(traceback.format_exc())
                say(f"HARNESS ERROR in client {i}:\n{self.harness_errors[-1]}")
                return
            finally:
                with self.lock:
                    self.zones[name].busy = False

    def send(self, worker, name, label, method, path, body, changes):
        """One request, into the ledger and the model; 500s and timeouts are violations."""
        if label in ("create", "delete"):
            self.zone_op_sent = label
            self.zone_op.set()
        t0 = time.monotonic()
        try:
            status, answer = call(self.cluster.bindcar.port, method, path, body)
            outcome = outcome_of(status)
            note = answer.get("error", "") if isinstance(answer, dict) else answer[:120]
        except Unsent:
            self.ledger.unsent()
            self.load_stop.wait(0.05)           # bindcar is down: no busy loop
            return "unsent"
        except TimeoutError:
            status, outcome, note = None, "timeout", f"no answer within {REQUEST_TIMEOUT:g} s"
        except (OSError, http.client.HTTPException) as e:
            status, outcome, note = None, "lost", f"connection lost: {e!r}"
        entry = self.ledger.add(self.round, worker, name, label, t0, status, outcome, note)
        self.zones[name].settle(changes, outcome)
        if status == 500:
            self.violate(6, (6, self.round, "500", note.replace(name, "{zone}")),
                         f"500 to {label} of {name}: {note!r}", [name])
        elif outcome == "timeout" or entry.t1 - entry.t0 > REQUEST_TIMEOUT:
            self.violate(6, (6, self.round, "timeout", label.split()[0]),
                         f"{label} of {name} took {entry.t1 - entry.t0:.1f} s (client "
                         f"timeout {REQUEST_TIMEOUT:g} s)", [name])
        return outcome

    # -- faults

    def fault(self, kind):
        """Inject one fault and heal it; /ready must follow within READY_LIMIT.  Half the
        kills and freezes are aimed: they strike at most AIM after a client sent a create
        or delete, when bindcar is likely between two steps that must go together."""
        c, hold, aim, aimed = self.cluster, self.rng.uniform(2, 5), self.rng.uniform(0, AIM), ""
        if kind != "disk full" and self.rng.random() < 0.5:
            self.zone_op.clear()
            if self.zone_op.wait(2.0):
                time.sleep(aim)
                aimed = f", {aim * 1000:.1f} ms after a {self.zone_op_sent} went out"
        at, pid = self.now(), (c.primary if "named" in kind else c.bindcar).proc.pid
        self.faults[kind] += 1
        if kind == "disk full":
            what = f"zone directory full for {hold:.1f} s"
            c.fill()
            time.sleep(hold)                    # the seeded fault itself, not a wait
            c.unfill()
            self.full.append((at, self.now()))
        elif kind == "SIGSTOP named":
            what = f"SIGSTOP named (pid {pid}) for {hold:.1f} s"
            c.primary.proc.send_signal(signal.SIGSTOP)
            time.sleep(hold)
            c.primary.proc.send_signal(signal.SIGCONT)
        elif kind == "SIGKILL named":
            what = f"SIGKILL named (pid {pid}), {hold / 3:.1f} s down"
            c.primary.stop(signal.SIGKILL)
            time.sleep(hold / 3)
        else:
            what = f"SIGKILL bindcar (pid {pid})"
            c.bindcar.stop(signal.SIGKILL)
        healed = time.monotonic()
        if kind.startswith("SIGKILL"):
            self.start_again(c.primary if kind.endswith("named") else c.bindcar, kind[8:])
        ready = time.monotonic() - healed if poll(c.ready, READY_WAIT) else None
        if kind != "disk full":
            self.windows.append((at, self.now() + GRACE))
        self.recoveries.append(READY_WAIT if ready is None else ready)
        if kind == "SIGKILL named":
            self.rss.append((c.bindcar.proc.pid, c.rss_kb()))
        after = f"not within {READY_WAIT:g} s" if ready is None else f"{ready:.2f} s after"
        say(f"[round {self.round} +{at:.2f}s] {what}{aimed}: /ready {after}")
        if ready is None or ready > READY_LIMIT:
            self.violate(6, (6, self.round, "ready", kind),
                         f"/ready {after} {what} (limit {READY_LIMIT:g} s)")

    def start_again(self, process, what):
        try:
            process.start()
        except RuntimeError as e:
            self.violate(6, (6, self.round, "start", what), f"{what} did not start again: "
                         f"{str(e)[-1500:]}")
            raise

    def quiesce(self):
        """Every process running (one that exited by itself is a violation) and ready."""
        c, began, restarted = self.cluster, self.now(), False
        for process, what in ((c.primary, "named"), (c.secondary, "the secondary named"),
                              (c.bindcar, "bindcar")):
            code = process.proc.poll()
            if code is not None:
                self.violate(6, (6, self.round, "exited", what),
                             f"{what} exited by itself (code {code})")
                self.start_again(process, what)
                restarted = True
        if not poll(c.ready, READY_WAIT):
            self.violate(6, (6, self.round, "not ready"), f"/ready is not 200 {READY_WAIT:g}"
                         f" s after the load stopped: {c.request('GET', '/api/v1/ready')}")
        if restarted:
            self.windows.append((began, self.now() + GRACE))

    def misleading_503s(self):
        """This round's 503s while named and bindcar were up (invariant 8).  One whose
        request saw the zone directory's space come back is left out: named's SERVFAIL
        came while it was full, and bindcar may look after the space returned."""
        for e in self.ledger.entries:
            if e.round != self.round or e.status != 503 or any(
                    start <= e.t1 and e.t0 <= end for start, end in self.windows):
                continue
            if any(e.t0 <= end <= e.t1 for _, end in self.full):
                self.notes["503s of requests that saw the zone directory's space return"] += 1
                continue
            full = any(start <= e.t1 and e.t0 <= end for start, end in self.full)
            self.violate(8, (8, self.round, e.op.split()[0], e.note.replace(e.zone, "{zone}")),
                         f"503 to {e.op} of {e.zone} (#{e.n}) while named and bindcar were "
                         f"up: {e.note!r}" + ("; the zone directory was full, which README "
                                              "answers with 507" if full else ""),
                         [e.zone], upto=e.n)

    # -- rounds

    def rounds(self, seconds, kills=None):
        """Rounds for about ``seconds``, or until ``kills`` kills are done."""
        checker, end = Checker(self), self.start + seconds
        while kills is None or sum(self.faults[k] for k in KILLS) < kills:
            self.round += 1
            self.load(max(2.0, min(self.rng.uniform(*LOAD_SECONDS), end - time.monotonic() - 2)))
            self.quiesce()
            self.misleading_503s()
            checker.check()
            if end - time.monotonic() < MIN_ROUND:
                return

    def load(self, seconds):
        """The clients work for ``seconds``, and at least a second after the last fault."""
        kinds, weights = zip(*[(k, w) for k, w in zip(FAULTS, WEIGHTS)
                               if k != "disk full" or self.cluster.mounted])
        faults = sorted((self.rng.uniform(0.5, max(1.0, seconds - 2)),
                         self.rng.choices(kinds, weights)[0])
                        for _ in range(self.rng.choice((2, 3, 3))))
        say(f"round {self.round} (+{self.now():.1f}s): {seconds:.1f} s of load, "
            f"{', '.join(kind for _, kind in faults)}")
        self.load_stop.clear()
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True)
                   for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        for at, kind in faults:
            self.load_stop.wait(max(0.0, began + at - time.monotonic()))
            self.fault(kind)
        self.load_stop.wait(max(1.0, began + seconds - time.monotonic()))
        self.load_stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT + 5)

    # -- the report

    def report(self):
        out = self.ledger.outcomes
        say(f"\nseed {self.seed}: {self.round} rounds in {self.now():.0f} s")
        say("faults: " + ", ".join(f"{k} {self.faults[k]}" for k in FAULTS))
        say("requests: " + ", ".join(f"{k} {out[k]:,}" for k in OUTCOMES))
        for (op, status, note), n in self.ledger.refusals.most_common(8):
            say(f"  refused {n:,}x: {op} -> {status} {note[:100]!r}")
        if times := sorted(self.recoveries):
            say(f"recovery to /ready: p50 {percentile(times, 50):.2f} s, p99 "
                f"{percentile(times, 99):.2f} s, max {times[-1]:.2f} s ({len(times)} heals)")
        if samples := [(pid, kb) for pid, kb in self.rss if kb]:
            (pid0, kb0), (pid1, kb1) = samples[0], samples[-1]
            say(f"bindcar RSS after named restarts: first {kb0 / 1024:.1f} MB (pid {pid0}), "
                f"last {kb1 / 1024:.1f} MB (pid {pid1}), {len(samples)} samples" +
                ("  <-- GROWTH" if pid0 == pid1 and kb1 > kb0 * 1.25 else ""))
        for note, n in self.notes.items():
            say(f"note: {note}: {n}")
        found = [(key, v) for key, v in self.violations.items() if v]
        by_number = collections.Counter(v.number for _, v in found)
        say("violations by invariant: " + ", ".join(f"{i}: {by_number[i]}" for i in range(1, 9)))
        for key, v in sorted(found, key=lambda kv: (kv[1].number, kv[1].round)):
            say(f"  [{v.number}] round {v.round}, seen {self.counts[key]}x: {v.text[:200]}")
        kills = sum(self.faults[k] for k in KILLS)
        say(f"rounds {self.round}, kills {kills}, requests {len(self.ledger.entries):,}, "
            f"violations {len(self.violations)}")


def main(argv=None):
    """One run; the number of violations it found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="replay a run's faults (default: a new seed)")
    parser.add_argument("--seconds", type=float, default=300.0, help="about how long to run")
    parser.add_argument("--kills", type=int, help="stop once this many kills are done")
    parser.add_argument("--keep", action="store_true", help="keep the directory and its logs")
    parser.add_argument("--refresh-help", action="store_true",
                        help="`rndc refresh` a zone the secondary has not followed after "
                             f"{NUDGE_AFTER:g} s (by default bindcar's NOTIFYs alone bring it)")
    args = parser.parse_args(argv)
    global REFRESH_HELP
    REFRESH_HELP = args.refresh_help
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    say(f"seed {seed}")
    root = tempfile.mkdtemp(prefix="bindcar-chaos-")
    cluster = run = None
    try:
        cluster = Cluster(root)
        run = Run(seed, cluster)
        cluster.start()
        run.rounds(args.seconds, args.kills)
    finally:
        if run:
            run.load_stop.set()
        if cluster:
            cluster.close(args.keep)
        if args.keep:
            say(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        if run:
            run.report()
    if run.harness_errors:
        raise RuntimeError(f"{len(run.harness_errors)} harness error(s): see above")
    return len(run.violations)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(1 if main() else 0)
    except KeyboardInterrupt:
        say("interrupted: everything started was stopped")
        sys.exit(130)
