"""A real named for the tests: loopback, free ports, a private directory.

``named`` (session-wide) is shared by tests that only add zones under
names of their own; ``own_named`` is a fresh server for tests that stop,
restart or crash it.  Each is stopped by its own PID, and its log is
attached to the report of any failed test that used it.
"""

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import rndc_proto  # noqa: E402

NAMED = shutil.which("named") or "/usr/sbin/named"
ALGORITHMS = list(rndc_proto.ALGORITHMS)
START_TIMEOUT = 20.0

STATIC_ZONE = """\
$TTL 300
@ IN SOA ns1.static.test. admin.static.test. 2024010101 3600 600 604800 300
@ IN NS ns1.static.test.
ns1 IN A 127.0.0.1
www IN A 192.0.2.80
"""


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


ADDED_ADDRESSES = []            # loopback addresses this run put on lo, taken off at its end


def on_loopback(address):
    """Put ``address`` (127.0.0.2, ...) on the lo interface when it is not there: named
    listens only on addresses an interface has, and lo has 127.0.0.1 alone."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"],
                           capture_output=True, text=True, check=True).stdout
    if f" {address}/" not in shown:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        ADDED_ADDRESSES.append(address)


@pytest.fixture(scope="session", autouse=True)
def loopback_addresses():
    yield
    for address in ADDED_ADDRESSES:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)


def accept_forever(listener, handle):
    """A thread that calls ``handle(connection)``, each in a thread of its own, for
    every connection ``listener`` accepts, until it is closed (the fault relays)."""
    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def stop_process(proc, sig=signal.SIGTERM):
    """Send ``sig`` to a process we started; kill it after 10 s; its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class ServerProcess:
    """What a server the tests start has in common: ``proc`` and ``log_path``."""

    proc = log_path = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"


class NamedServer(ServerProcess):
    """One named process in its own directory, with a key per algorithm."""

    started = []                   # every instance of the run, for the log checks at the end

    def __init__(self, directory, extra_options="", extra_conf="", notify="no",
                 address="127.0.0.1", dns_port=None, controls=""):
        self.dir, self.address = directory, address     # a secondary may have 127.0.0.2
        if address != "127.0.0.1":
            on_loopback(address)
        self.notify = notify                  # "explicit": only to also-notify lists
        self.extra_options = extra_options
        self.extra_conf = extra_conf          # statements after the options, e.g. zones
        self.controls = controls              # more of the control channel: "read-only yes"
        self.dns_port = dns_port or free_port()
        self.control_port = free_port()
        self.secrets = {alg: base64.b64encode(secrets.token_bytes(32)).decode()
                        for alg in ALGORITHMS}
        self.log_path = os.path.join(directory, "named.log")
        self.conf_path = os.path.join(directory, "named.conf")
        self.proc = None
        with open(os.path.join(directory, "static.test.zone"), "w") as f:
            f.write(STATIC_ZONE)
        self._write_conf()
        self._write_rndc_conf()

    def key_name(self, algorithm):
        return "rndc-" + algorithm.removeprefix("hmac-")

    def _write_conf(self):
        keys = "".join(
            f'key "{self.key_name(alg)}" {{ algorithm {alg}; secret "{secret}"; }};\n'
            for alg, secret in self.secrets.items())
        names = " ".join(f'"{self.key_name(alg)}";' for alg in self.secrets)
        d = self.dir
        conf = f"""\
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {self.dns_port} {{ {self.address}; }};
    listen-on-v6 {{ none; }};
    transfer-source {self.address}; query-source address {self.address};
    notify-source {self.address};         # one source address, as a pod has
    recursion no;
    dnssec-validation no;
    notify {self.notify};                # tests never send NOTIFY beyond this machine
    allow-new-zones yes;
    {self.extra_options}
}};
{keys}key "update-key" {{ algorithm hmac-sha256; secret "{self.secrets['hmac-sha256']}"; }};
controls {{ inet 127.0.0.1 port {self.control_port} allow {{ 127.0.0.1; }} keys {{ {names} }} {self.controls}; }};
zone "static.test" {{ type primary; file "static.test.zone"; }};
{self.extra_conf}"""
        with open(self.conf_path, "w") as f:
            f.write(conf)

    def _write_rndc_conf(self):
        """An rndc.conf for ISC rndc and for load_config, default key hmac-sha256."""
        self.rndc_conf = os.path.join(self.dir, "rndc.conf")
        keys = "".join(
            f'key "{self.key_name(alg)}" {{ algorithm {alg}; secret "{secret}"; }};\n'
            for alg, secret in self.secrets.items())
        with open(self.rndc_conf, "w") as f:
            f.write(f'{keys}options {{ default-server 127.0.0.1; '
                    f'default-port {self.control_port}; default-key "rndc-sha256"; }};\n')
        os.chmod(self.rndc_conf, 0o600)

    def start(self):
        """Start named and wait until its control channel answers."""
        NamedServer.started.append(self)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [NAMED, "-g", "-n", "1", "-c", self.conf_path],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        with self.client(timeout=1.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"named exited at start:\n{self.log_tail()}")
                try:
                    client.call("status")
                    return self
                except rndc_proto.RndcConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"named did not answer:\n{self.log_tail()}")
                    time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM):
        """Stop named by its own PID; kill it if it does not go within 10 s."""
        stop_process(self.proc, sig)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def client(self, algorithm="hmac-sha256", timeout=5.0, secret=None):
        return rndc_proto.RndcClient("127.0.0.1", self.control_port, algorithm,
                                     secret or self.secrets[algorithm], timeout)

    def dig(self, name, rtype="A", *extra):
        """Ask this named with dig; return (status, answer lines)."""
        return dig_at(self.address, self.dns_port, name, rtype, *extra)


def dig_at(address, port, name, rtype="A", *extra):
    """Ask the server at ``address``/``port`` with dig; return (status, answer lines)."""
    out = subprocess.run(
        ["dig", f"@{address}", "-p", str(port), "+norecurse", "+tries=1", "+time=2",
         *extra, name, rtype], capture_output=True, text=True, timeout=10).stdout
    status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else ""
    answers, in_answer = [], False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            in_answer = True
        elif in_answer and not line.strip():
            in_answer = False
        elif in_answer:
            answers.append(line)
    return status, answers


def _new_server(tmp_factory, name, extra_options="", extra_conf="", notify="no", **more):
    if not os.path.exists(NAMED):
        pytest.fail("named is not installed: run `make test`, which installs bind9")
    return NamedServer(str(tmp_factory.mktemp(name)), extra_options, extra_conf, notify,
                       **more)


@pytest.fixture(scope="session")
def named(tmp_path_factory):
    """The shared named; tests must use zone names of their own."""
    server = _new_server(tmp_path_factory, "named").start()
    yield server
    server.stop()


@pytest.fixture
def own_named(tmp_path_factory):
    """A named of this test's own, free to stop, restart or crash."""
    server = _new_server(tmp_path_factory, "own-named").start()
    yield server
    server.stop()


@pytest.fixture
def make_named(tmp_path_factory):
    """Start nameds of this test's own: make_named(extra_conf="zone ...;", notify=...)."""
    started = []

    def make(start=True, **kwargs):
        server = _new_server(tmp_path_factory, "more-named", **kwargs)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def quick_idle_named(tmp_path_factory):
    """A named that closes idle control connections after 1 s instead of 30 s."""
    server = _new_server(tmp_path_factory, "idle-named",
                         "tcp-idle-timeout 10; tcp-initial-timeout 25;").start()
    yield server
    server.stop()


@pytest.fixture
def unique():
    """A short unique label, for zone names in the shared named."""
    return "t" + secrets.token_hex(4)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, NamedServer):
                report.sections.append((f"named log ({value.dir})", value.log_tail()))
            elif isinstance(value, Bindcar):
                report.sections.append((f"bindcar log (port {value.port})",
                                        value.log_text()[-6000:]))



# ---------------------------------------------------------------- bindcar as a real process

import http.client  # noqa: E402
import json  # noqa: E402

BINDCAR = os.path.join(ROOT, "bindcar.py")
SYSTEM_PYTHON = "/usr/bin/python3"          # what the unit and the image run
TOKEN = "test-token-" + secrets.token_hex(16)


class Bindcar:
    """``python3 bindcar.py`` on a free port, beside a NamedServer."""

    started = []                   # every instance of the run, for the log checks at the end

    def __init__(self, named, zone_dir, **env):
        self.named, self.zone_dir = named, zone_dir
        self.port = free_port()
        # Beside the zone directory, named after it: a port can come round again for
        # another test's bindcar, and its log must not run on into this one.
        self.log_path = os.path.normpath(zone_dir) + f"-bindcar-{self.port}.log"
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "API_PORT": str(self.port), "BIND_API_ADDRESS": "127.0.0.1",
                    "BIND_ZONE_DIR": zone_dir,
                    "RNDC_SERVER": f"127.0.0.1:{named.control_port}",
                    "RNDC_ALGORITHM": "hmac-sha256",
                    "RNDC_SECRET": named.secrets["hmac-sha256"], "BIND_API_TOKEN": TOKEN,
                    # record changes on named's DNS port, signed with named.conf's update-key
                    "NSUPDATE_PORT": str(named.dns_port), "NSUPDATE_KEY_NAME": "update-key"}
        self.env.update({k: v for k, v in env.items() if v is not None})
        for k, v in env.items():
            if v is None:
                self.env.pop(k, None)
        if self.env.get("BIND_API_ADDRESS") == "0.0.0.0":     # free on every address,
            with socket.socket() as probe:                     # not only on 127.0.0.1
                probe.bind(("0.0.0.0", 0))
                self.port = probe.getsockname()[1]
            self.env["API_PORT"] = str(self.port)
            self.log_path = os.path.normpath(zone_dir) + f"-bindcar-{self.port}.log"
        self.proc = None
        self.command = [sys.executable, BINDCAR]     # tests may run it as the image does
        self.popen = {}                              # e.g. user=101, group=101

    def start(self, wait=True):
        Bindcar.started.append(self)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     **self.popen)
        log.close()
        if wait:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bindcar exited at start:\n{self.log_text()}")
                try:
                    if self.request("GET", "/health")[0] == 200:
                        return self
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bindcar did not answer:\n{self.log_text()}")
                time.sleep(0.02)
        return self

    def stop(self, sig=signal.SIGTERM):
        """Stop bindcar by its own PID; its exit code."""
        return stop_process(self.proc, sig)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_records(self):
        """The JSON log lines written so far (a line still being written is left out)."""
        text = self.log_text()
        lines = text.splitlines()[:-1] if not text.endswith("\n") else text.splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, token=TOKEN, headers=None, conn=None):
        """(status, parsed JSON or text, headers) over a new or given connection."""
        own = conn is None
        conn = conn or self.connection()
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            if own:
                conn.close()
        ctype = resp.getheader("Content-Type", "")
        parsed = json.loads(data) if ctype.startswith("application/json") and data else \
            data.decode(errors="replace")
        return resp.status, parsed, resp


@pytest.fixture(scope="session")
def bindcar(named, tmp_path_factory):
    """A bindcar with token auth over the shared named; zone names must be unique."""
    zone_dir = str(tmp_path_factory.mktemp("zones"))
    server = Bindcar(named, zone_dir, MAX_CONNECTIONS_PER_CLIENT="256").start()
    yield server
    server.stop()


@pytest.fixture
def make_bindcar(tmp_path_factory):
    """Start bindcars of this test's own: make_bindcar(named, **env)."""
    started = []

    def make(named, start=True, zone_dir=None, **env):
        zone_dir = zone_dir or str(tmp_path_factory.mktemp("zones"))
        server = Bindcar(named, zone_dir, **env)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def world_readable_app():
    """The four modules copied where any user can run them (CI may clone under /root),
    and a zones/ directory owned by UID 101, as the image runs."""
    root = tempfile.mkdtemp(prefix="bindcar-app-")
    os.chmod(root, 0o755)
    app = os.path.join(root, "app")
    os.mkdir(app)
    for name in ("bindcar.py", "rndc_proto.py", "zonefile.py", "dns_proto.py", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), app)
    if os.path.exists(SYSTEM_PYTHON):                 # compiled, as the image's first stage does
        subprocess.run([SYSTEM_PYTHON, "-m", "compileall", "-q", "--invalidation-mode",
                        "unchecked-hash", app], check=True, timeout=60)
    os.mkdir(os.path.join(root, "zones"))
    os.chown(os.path.join(root, "zones"), 101, 101)
    yield root
    shutil.rmtree(root, ignore_errors=True)

