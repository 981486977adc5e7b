"""Where operators run bindcar: the systemd unit, socket activation, the image."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, SYSTEM_PYTHON, free_port
from test_bindcar import zone_body

UNIT = os.path.join(ROOT, "bindcar.service")
SOCKET_UNIT = os.path.join(ROOT, "bindcar.socket")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
needs_systemd_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"),
                                           reason="systemd-analyze is not installed")


def unit_settings(path):
    settings = {}
    for line in open(path).read().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


# ------------------------------------------------------------------ the unit

@needs_systemd_analyze
def test_unit_exposure_is_safe():
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", UNIT],
                         capture_output=True, text=True, timeout=60).stdout
    level = float(re.search(r"Overall exposure level for bindcar.service: ([\d.]+)", out).group(1))
    assert level <= 1.5, out


@needs_systemd_analyze
def test_units_verify_clean():
    done = subprocess.run(["systemd-analyze", "verify", UNIT, SOCKET_UNIT], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_unit_runs_as_bind_with_secrets_as_credentials():
    unit = unit_settings(UNIT)
    assert unit["Type"] == ["notify"] and unit["User"] == ["bind"]
    assert unit["ExecStart"] == ["/usr/bin/python3 -E -s -B -m bindcar"]
    assert unit["WorkingDirectory"] == ["/usr/local/lib/bindcar"]
    assert "api-token:/etc/bindcar/api-token" in unit["LoadCredential"]
    assert "rndc.key:/etc/bind/rndc.key" in unit["LoadCredential"]
    assert unit["EnvironmentFile"] == ["-/etc/default/bindcar"]
    assert unit["ReadWritePaths"] == ["/var/cache/bind"] and unit["ProtectSystem"] == ["strict"]
    text = open(UNIT).read()
    assert "BIND_API_TOKEN" not in text and "RNDC_SECRET" not in text


class NotifySocket:
    """What systemd listens on for Type=notify: a Unix datagram socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []

    def wait_for(self, field, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(field in m.split("\n") or any(line.startswith(field) for line in m.split("\n"))
                   for m in self.messages):
                return [m for m in self.messages if field in m][0]
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        raise AssertionError(f"no {field} in {self.messages}")


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_ready_status_watchdog_and_stopping(make_bindcar, named, tmp_path, abstract):
    name = f"@bindcar-test-{os.getpid()}-{free_port()}" if abstract else str(tmp_path / "notify")
    notify = NotifySocket("\0" + name[1:] if abstract else name)
    server = make_bindcar(named, start=False, NOTIFY_SOCKET=name, WATCHDOG_USEC="400000")
    server.start()
    ready = notify.wait_for("READY=1")
    assert re.search(r"STATUS=Serving 127\.0\.0\.1:\d+; \d+ zones; auth token; named ", ready)
    assert f"MAINPID={server.proc.pid}" in ready
    notify.wait_for("WATCHDOG=1", 3)
    assert server.stop() == 0
    assert "STATUS=Stopping" in notify.wait_for("STOPPING=1")


def test_watchdog_is_for_our_pid_only(make_bindcar, named, tmp_path):
    notify = NotifySocket(str(tmp_path / "notify"))
    server = make_bindcar(named, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="200000",
                          WATCHDOG_PID="1")
    notify.wait_for("READY=1")
    time.sleep(0.5)
    notify.wait_for("", 0.3)
    assert not any("WATCHDOG=1" in m for m in notify.messages)
    server.stop()


def test_sigterm_lets_a_create_in_flight_finish(make_bindcar, own_named, unique):
    server = make_bindcar(own_named, RNDC_TIMEOUT="10")
    zone = f"{unique}.example"
    own_named.proc.send_signal(signal.SIGSTOP)          # the create waits on named
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        answer=server.request("POST", "/api/v1/zones", zone_body(zone))))
    try:
        worker.start()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert server.proc.poll() is None               # still finishing the create
        with pytest.raises(OSError):                     # but no longer listening
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    finally:
        own_named.proc.send_signal(signal.SIGCONT)
    worker.join(20)
    assert result["answer"][0] == 201
    assert server.proc.wait(10) == 0
    assert own_named.dig(f"www.{zone}")[0] == "NOERROR"
    records = server.log_records()
    assert records[-1]["message"] == "stopped" and "unfinished_connections" not in records[-1]


def test_sigterm_works_even_when_the_parent_blocked_it(make_bindcar, named):
    """A signal mask is inherited: bindcar unblocks SIGTERM and SIGINT itself."""
    server = make_bindcar(named, start=False)
    server.popen = {"preexec_fn": lambda: signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})}
    server.start()
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0 and time.monotonic() - started < 3
    assert server.log_records()[-1]["message"] == "stopped"


def test_sigterm_closes_idle_keep_alive_connections_at_once(make_bindcar, named):
    server = make_bindcar(named)
    conn = server.connection()
    assert server.request("GET", "/api/v1/zones", conn=conn)[0] == 200      # now idle
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 3
    conn.close()


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate is not installed")
def test_socket_activation_serves_the_inherited_socket(make_bindcar, named):
    server = make_bindcar(named, start=False)
    port = server.port
    server.env["API_PORT"] = "1"                         # ignored: the socket is inherited
    passed = [f"--setenv={k}" for k in server.env]
    server.command = ["systemd-socket-activate", "--listen", f"127.0.0.1:{port}", *passed,
                      sys.executable, os.path.join(ROOT, "bindcar.py")]
    server.start(wait=False)
    deadline = time.monotonic() + 20
    while True:                                          # the first connection starts it
        try:
            if server.request("GET", "/health")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.1)
    assert server.request("GET", "/api/v1/zones")[0] == 200
    listening = [r for r in server.log_records() if r["message"] == "listening"][0]
    assert listening["port"] == port and listening["socket_activated"] is True


def test_credentials_directory_holds_token_and_rndc_key(make_bindcar, named, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api-token").write_text("credential-token\n")
    (credentials / "rndc.key").write_text(
        f'key "rndc-key" {{ algorithm hmac-sha512; secret "{named.secrets["hmac-sha512"]}"; }};\n')
    os.chmod(credentials / "rndc.key", 0o400)
    server = make_bindcar(named, BIND_API_TOKEN=None, RNDC_SECRET=None, RNDC_ALGORITHM=None,
                          CREDENTIALS_DIRECTORY=str(credentials))
    assert server.request("GET", "/api/v1/server/status", token="credential-token")[0] == 200
    assert server.request("GET", "/api/v1/server/status")[0] == 401
    start = [r for r in server.log_records() if r["message"] == "starting"][0]
    assert start["rndc_algorithm"] == "hmac-sha512"
    assert start["rndc_sources"]["secret"] == str(credentials / "rndc.key")
    assert start["rndc_sources"]["algorithm"] == str(credentials / "rndc.key")


# ------------------------------------------------------------------ the image

def dockerfile():
    lines, current = [], ""
    for line in open(DOCKERFILE).read().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]


def test_dockerfile_is_distroless_and_minimal():
    instructions = dockerfile()
    froms = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert [instructions[i][1] for i in froms] == ["python:3.13-slim AS compile",
                                                   "gcr.io/distroless/python3-debian13"]
    compile_stage, final = instructions[froms[0]:froms[1]], instructions[froms[1]:]
    assert "RUN" not in [op for op, _ in final]                 # nothing runs in distroless
    assert [arg for op, arg in final if op == "COPY"] == ["--from=compile /app /app"]
    sources = [s for op, arg in compile_stage if op == "COPY" for s in arg.split()[:-1]]
    assert sources == ["bindcar.py", "rndc_proto.py", "zonefile.py", "dns_proto.py", "LICENSE"]
    assert all(os.path.exists(os.path.join(ROOT, source)) for source in sources)
    assert [arg for op, arg in compile_stage if op == "RUN"] == [
        "python3 -m compileall -q --invalidation-mode unchecked-hash /app"]
    final = dict(final)
    assert (final["USER"], final["EXPOSE"], final["WORKDIR"]) == ("101:101", "8080", "/app")
    entry = json.loads(final["ENTRYPOINT"])
    assert entry == ["/usr/bin/python3", "-E", "-s", "-B", "-m", "bindcar"]
    assert json.loads(final["HEALTHCHECK"].split("CMD", 1)[1]) == entry + ["--healthcheck"]
    ignored = [line for line in open(os.path.join(ROOT, ".dockerignore")).read().splitlines()
               if line and not line.startswith("#")]
    assert ignored[0] == "*" and all(line.startswith("!") for line in ignored[1:])
    assert {line[1:] for line in ignored[1:]} == set(sources)


def image_command(extra=()):
    """The image's entrypoint, word for word (it runs in WORKDIR, here the app copy)."""
    return json.loads(dict(dockerfile())["ENTRYPOINT"]) + list(extra)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to run as UID 101) and /usr/bin/python3")
def test_image_entrypoint_runs_as_uid_101_with_only_documented_variables(make_bindcar, named,
                                                                       world_readable_app, unique):
    zone_dir = os.path.join(world_readable_app, "zones")
    server = make_bindcar(named, start=False, zone_dir=zone_dir)
    documented = {"API_PORT", "BIND_API_ADDRESS", "BIND_ZONE_DIR", "RNDC_SERVER", "RNDC_SECRET",
                  "BIND_API_TOKEN"}
    server.env = {k: v for k, v in server.env.items() if k in documented}    # no PATH, no HOME
    app = os.path.join(world_readable_app, "app")
    server.command = image_command()
    server.popen = {"user": 101, "group": 101, "extra_groups": [], "cwd": app}
    server.start()
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    stat = os.stat(os.path.join(zone_dir, f"{zone}.zone"))
    assert (stat.st_uid, stat.st_mode & 0o777) == (101, 0o644)
    assert named.dig(f"www.{zone}")[0] == "NOERROR"
    health = subprocess.run(image_command(["--healthcheck"]), env=server.env, cwd=app,
                            user=101, group=101, extra_groups=[], timeout=30)
    assert health.returncode == 0
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert server.stop() == 0
    health = subprocess.run(image_command(["--healthcheck"]), env=server.env, cwd=app,
                            timeout=30)
    assert health.returncode == 1
    tag = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.implementation.cache_tag)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    compiled = sorted(os.listdir(os.path.join(app, "__pycache__")))         # nothing new (-B)
    assert compiled == sorted(f"{m}.{tag}.pyc" for m in ("bindcar", "rndc_proto", "zonefile",
                                                                  "dns_proto"))
