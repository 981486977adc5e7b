"""A real Knot DNS secondary for the tests: it follows a primary's catalog zone.

``KnotServer`` runs one ``knotd`` in a private directory, listening on a
loopback address of its own (e.g. 127.0.0.2, so that it can be told from a
named on 127.0.0.1), with the catalog zone set to ``catalog-role:
interpret`` (RFC 9432): every member zone the primary lists in the catalog
is transferred from the primary and served.  All its outgoing traffic
(SOA queries, transfers) leaves from its own address.  It is stopped by its
own PID, like NamedServer in conftest.py.
"""

import os
import shutil
import signal
import subprocess
import time

from conftest import ServerProcess, dig_at, stop_process

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KNOTC = shutil.which("knotc") or "/usr/sbin/knotc"
START_TIMEOUT = 20.0
# With ``quick``, knotd refreshes a zone at least this often (seconds), whatever the
# SOA says, and retries a failed refresh or bootstrap as quickly.  Without it, knotd
# waits as it would in production (its first retry of a failed bootstrap: ~16 s), and
# only a NOTIFY brings a change at once.
QUICK_INTERVAL = 2


class KnotServer(ServerProcess):
    """One knotd in its own directory, a secondary interpreting ``catalog``.

    ``key`` is None or (name, algorithm, base64 secret): the TSIG key the
    secondary signs its queries and transfers to the primary with; a NOTIFY
    from ``notify_from`` (an address or a network; default the primary's) is
    then accepted only if signed with it.
    """

    def __init__(self, directory, address, port, catalog, primary_address, primary_port,
                 key=None, notify_from=None, quick=False):
        self.dir = directory
        self.address, self.port = address, port
        self.catalog = catalog.rstrip(".") + "."
        self.primary_address, self.primary_port = primary_address, primary_port
        self.key, self.quick = key, quick
        self.notify_from = notify_from or primary_address
        self.conf_path = os.path.join(directory, "knot.conf")
        self.log_path = os.path.join(directory, "knotd.log")
        self.proc = None
        # knotd does not create its directories: it fails at start without them
        for sub in ("run", "zones", "db", "db/journal", "db/timers", "db/keys",
                    "db/catalog"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        self._write_conf()

    def _write_conf(self):
        d = self.dir
        key_section = key_ref = ""
        if self.key:
            name, algorithm, secret = self.key
            key_section = (f"key:\n  - id: {name}\n    algorithm: {algorithm}\n"
                           f"    secret: {secret}\n\n")
            key_ref = f"    key: {name}\n"
        quick = (f"    refresh-min-interval: {QUICK_INTERVAL}\n"
                 f"    refresh-max-interval: {QUICK_INTERVAL}\n"
                 f"    retry-min-interval: 1\n"
                 f"    retry-max-interval: {QUICK_INTERVAL}\n") if self.quick else ""
        conf = f"""\
server:
    rundir: "{d}/run"
    pidfile: "{d}/run/knot.pid"
    listen: {self.address}@{self.port}
    background-workers: 2

control:
    listen: "{d}/run/knot.sock"

log:
  - target: stderr
    any: info

database:
    storage: "{d}/db"
    journal-db: "{d}/db/journal"
    timer-db: "{d}/db/timers"
    kasp-db: "{d}/db/keys"
    catalog-db: "{d}/db/catalog"

{key_section}remote:
  - id: primary
    address: {self.primary_address}@{self.primary_port}
    via: {self.address}
{key_ref}
acl:
  # a NOTIFY from the primary's side; with a key, it must be signed with it
  - id: notify-from-primary
    address: {self.notify_from}
{key_ref}    action: notify

template:
  - id: default
    storage: "{d}/zones"
    master: primary
    acl: notify-from-primary
{quick}
  # every member zone of the catalog
  - id: member
    storage: "{d}/zones"
    master: primary
    acl: notify-from-primary
{quick}
zone:
  - domain: {self.catalog}
    catalog-role: interpret
    catalog-template: member
"""
        with open(self.conf_path, "w") as f:
            f.write(conf)
        os.chmod(self.conf_path, 0o600)         # it holds the TSIG secret

    def start(self):
        """Start knotd and wait until its control socket answers."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [KNOTD, "-c", self.conf_path],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"knotd exited at start:\n{self.log_tail()}")
            if self.knotc("status").returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"knotd did not answer:\n{self.log_tail()}")
            time.sleep(0.05)

    def knotc(self, *args):
        """Run ``knotc -c knot.conf ARGS``; the CompletedProcess."""
        return subprocess.run([KNOTC, "-c", self.conf_path, "-t", "2", *args],
                              capture_output=True, text=True, timeout=10)

    def stop(self, sig=signal.SIGTERM):
        """Stop knotd by its own PID; kill it if it does not go within 10 s."""
        stop_process(self.proc, sig)
        self.proc = None

    def dig(self, name, rtype="A", *extra):
        """Ask this knotd with dig; return (status, answer lines)."""
        return dig_at(self.address, self.port, name, rtype, *extra)
