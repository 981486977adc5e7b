"""Faults and hostile input against real named: what the client sees, and what is left.

named dying exactly in the middle of one command cannot be timed with signals, so
RndcRelay sits between bindcar and named's real control port (DnsRelay its DNS
port): it forwards every frame byte for byte, and on request makes one command's
exchange end the way a named that dies or freezes would (the answer lost, or held
until the test lets named go on, as a stopped named's is until SIGCONT).
"""

import json
import os
import resource
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import bindcar as bindcar_module
import dns_proto
import rndc_proto
import zonefile
from conftest import SYSTEM_PYTHON, TOKEN, accept_forever
from test_bindcar import files_of, nsupdate, raw, status_and_json, zone_body
from test_catalog import poll


class Relay:
    """A TCP relay to one of named's ports with one-shot faults per request kind."""

    ACTIONS = ("lose_reply", "hang", "drop", "hold")
    HEAD = struct.Struct("!I")                  # a frame's length prefix

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.faults, self.seen, self.open = {}, [], []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.on_fault = None                    # called when a fault is taken (a kill)
        accept_forever(self.listener, self._relay)

    def fail(self, kind, action):
        """The next ``kind`` request: its answer lost after named ran it (lose_reply),
        not delivered and the connection closed (drop), or held with the connection
        kept open until ``release``: the answer, named having run it (hang), or the
        request itself, named not having read it yet (hold)."""
        assert action in self.ACTIONS
        self.faults[kind] = action

    def release(self):
        """A held request or answer goes on, as a stopped named's does on SIGCONT."""
        self.released.set()

    def close(self):
        self.listener.close()
        self.released.set()
        with self.lock:
            for sock in self.open:
                sock.close()

    def _frame(self, sock):
        head = sock.recv(self.HEAD.size, socket.MSG_WAITALL)
        if len(head) < self.HEAD.size:
            return None
        (length,) = self.HEAD.unpack(head)
        body = sock.recv(length, socket.MSG_WAITALL)
        return head + body if len(body) == length else None

    def _relay(self, client):
        upstream = socket.create_connection(self.target)
        with self.lock:
            self.open += [client, upstream]
        try:
            while True:
                frame = self._frame(client)
                if frame is None:
                    break
                kind = self.kind(frame[self.HEAD.size:])
                with self.lock:
                    action = self.faults.pop(kind, "forward")
                    self.seen.append(kind)
                if action != "forward" and self.on_fault:
                    self.on_fault(kind)
                if action == "drop":
                    break
                if action == "hold":
                    self.released.wait(60)
                upstream.sendall(frame)
                reply = self._frame(upstream)
                if reply is None or action == "lose_reply":
                    break
                if action == "hang":
                    self.released.wait(60)
                client.sendall(reply)
        except OSError:
            pass
        client.close()
        upstream.close()


class RndcRelay(Relay):
    """The RNDC control channel; a request's kind is its command's verb."""

    def __init__(self, named):
        super().__init__(named.control_port)

    @staticmethod
    def kind(body):
        return rndc_proto.decode_message(body)["_data"]["type"].decode().split(" ", 1)[0]


class DnsRelay(Relay):
    """named's DNS port over TCP; a request's kind is ("UPDATE" or "QUERY", its zone)."""

    HEAD = struct.Struct("!H")

    def __init__(self, named):
        super().__init__(named.dns_port)

    @staticmethod
    def kind(body):
        message = dns_proto.decode_message(body)
        name = dns_proto.labels_text(message.question[0][0]) if message.question else ""
        return ("UPDATE" if message.opcode == 5 else "QUERY", name)


@pytest.fixture
def relay(named):
    r = RndcRelay(named)
    yield r
    r.close()


@pytest.fixture
def relayed(make_bindcar, named, relay):
    """A bindcar that talks to named through the relay, with a 1 s RNDC timeout."""
    return make_bindcar(named, RNDC_SERVER=f"127.0.0.1:{relay.port}", RNDC_TIMEOUT="1")


def served(named, zone, command="zonestatus"):
    """Does named serve ``zone`` (with ``showzone``: have it, loaded or not)?"""
    try:
        named.client(timeout=5).call(f"{command} {zone}")
        return True
    except rndc_proto.RndcCommandError as e:
        assert e.err == "not found", e
        return False


def zone_files(server, zone):
    return [f for f in files_of(server.zone_dir) if f.startswith(zone) or zone in f]


# ------------------------------------------------------------------ named fails mid-command

@pytest.mark.parametrize("action", ["lose_reply", "hang", "drop"])
def test_create_that_named_leaves_unanswered_is_rolled_back(relayed, relay, named, unique,
                                                             action):
    zone = f"{unique}.example"
    relay.fail("addzone", action)
    started = time.monotonic()
    status, body, _ = relayed.request("POST", "/api/v1/zones", zone_body(zone))
    assert (status, body["error"]) == (503, "named is not reachable over RNDC")
    assert time.monotonic() - started < 5                      # RNDC_TIMEOUT=1
    if action == "hang":            # named added it and answers late: until then, nothing
        assert relay.seen[-1] == "addzone"                      # more is sent, and bindcar
        assert zone_files(relayed, zone) == [f"{zone}.zone"]    # keeps the zone's file
        relay.release()
    # The roll-back: named is asked what it holds, and only the zone bindcar sent goes.
    poll(lambda: not served(named, zone) and zone_files(relayed, zone) == [], 10,
         "the roll-back")
    assert relay.seen[-2:] == ["zonestatus", "delzone"] if action != "drop" \
        else relay.seen[-1] == "zonestatus"
    assert relayed.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert named.dig(f"www.{zone}")[0] == "NOERROR"
    relayed.request("DELETE", f"/api/v1/zones/{zone}")


def test_a_lost_answer_never_rolls_back_a_zone_bindcar_did_not_add(make_named, make_bindcar,
                                                                    unique):
    """named answered "already exists" for named.conf's zone, and the answer was lost:
    the roll-back must not delete named.conf's zone."""
    zone = f"{unique}.example"
    other = make_named(extra_conf=f'zone "{zone}" {{ type primary; file "static.test.zone"; }};\n')
    relay = RndcRelay(other)
    try:
        server = make_bindcar(other, RNDC_SERVER=f"127.0.0.1:{relay.port}", RNDC_TIMEOUT="1")
        relay.fail("addzone", "lose_reply")
        status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
        assert status == 503 and "delzone" not in relay.seen
        assert other.dig(f"www.{zone}")[0] == "NOERROR"           # still served
        assert zone_files(server, zone) == []
    finally:
        relay.close()


def test_delete_whose_answer_is_lost_is_completed(relayed, relay, named, unique):
    zone = f"{unique}.example"
    assert relayed.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    assert nsupdate(named, zone, f"update add x.{zone} 60 A 192.0.2.1").returncode == 0
    relay.fail("delzone", "lose_reply")                         # named deletes, then silence
    status, body, _ = relayed.request("DELETE", f"/api/v1/zones/{zone}")
    assert (status, body["message"]) == (200, f"Zone {zone} deleted successfully")
    assert not served(named, zone) and zone_files(relayed, zone) == []


def test_delete_that_never_reached_named_changes_nothing(relayed, relay, named, unique):
    zone = f"{unique}.example"
    assert relayed.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    relay.fail("delzone", "drop")
    status, body, _ = relayed.request("DELETE", f"/api/v1/zones/{zone}")
    assert status == 503 and body["error"] == "named is not reachable over RNDC"
    assert served(named, zone) and zone_files(relayed, zone) == [f"{zone}.zone"]
    assert relayed.request("GET", "/api/v1/zones")[1]["zones"] == [zone]
    assert relayed.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert not served(named, zone) and zone_files(relayed, zone) == []


@pytest.fixture
def with_catalog(make_named, make_bindcar, unique):
    """A primary named, relays to its control and DNS ports, and a bindcar keeping the
    catalog ``cat-<unique>.test`` through them with 1 s timeouts: (named, bindcar,
    rndc relay, dns relay, catalog)."""
    catalog = f"cat-{unique}.test"
    primary = make_named(notify="explicit")
    rndc, dns = RndcRelay(primary), DnsRelay(primary)
    server = make_bindcar(primary, RNDC_SERVER=f"127.0.0.1:{rndc.port}", RNDC_TIMEOUT="1",
                          NSUPDATE_PORT=str(dns.port), NSUPDATE_TIMEOUT="1",
                          BIND_CATALOG_ZONE=catalog)
    poll(lambda: server.request("GET", "/api/v1/catalog")[0] == 200, 20, "the catalog")
    yield primary, server, rndc, dns, catalog
    rndc.close()
    dns.close()


def catalog_agrees(server, members):
    """The catalog holds ``members`` members and is what bindcar manages."""
    status, body, _ = server.request("GET", "/api/v1/catalog")
    return status == 200 and (body["members"], body["missing"], body["orphans"]) == \
        (members, [], [])


def test_a_delete_named_runs_late_is_finished(with_catalog, unique):
    """named stopped with delzone unread: DELETE answers 503; when named goes on and
    deletes the zone, bindcar finishes the delete (no listing, file or member left)."""
    primary, server, rndc, dns, catalog = with_catalog
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    rndc.fail("delzone", "hold")
    status, body, _ = server.request("DELETE", f"/api/v1/zones/{zone}")
    assert status == 503 and served(primary, zone)
    rndc.release()
    poll(lambda: server.request("GET", "/api/v1/zones")[1]["zones"] == [], 10,
         "the delete to be finished")
    assert not served(primary, zone) and zone_files(server, zone) == []
    assert catalog_agrees(server, 0)
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 404
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    assert catalog_agrees(server, 1)


def test_a_member_removal_named_applies_late_is_mended(with_catalog, unique):
    """named stopped with the catalog UPDATE that removes a member unread: the DELETE's
    undo (the member again) must not overtake it, and the zone, which stays, is a member
    again once named has answered."""
    primary, server, rndc, dns, catalog = with_catalog
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    dns.fail(("UPDATE", f"{catalog}."), "hold")
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 503
    assert served(primary, zone) and "delzone" not in rndc.seen
    dns.release()
    poll(lambda: catalog_agrees(server, 1), 10, "the member to come back")
    assert server.request("GET", "/api/v1/zones")[1]["zones"] == [zone]


def test_named_killed_before_a_new_zone_joins_the_catalog(with_catalog, unique):
    """addzone done, named killed as the member's UPDATE goes: the create is undone when
    named is back (it had kept the zone in its NZD), not left as a zone no call can
    reach."""
    primary, server, rndc, dns, catalog = with_catalog
    zone = f"{unique}.example"
    dns.on_fault = lambda kind: primary.stop(signal.SIGKILL)
    dns.fail(("UPDATE", f"{catalog}."), "drop")
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))
    assert status == 503
    assert zone_files(server, zone) == [f"{zone}.zone"]       # kept while named is away
    primary.start()
    poll(lambda: zone_files(server, zone) == [] and not served(primary, zone), 15,
         "the create to be undone")
    assert zone not in server.request("GET", "/api/v1/zones")[1]["zones"]
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    assert catalog_agrees(server, 1) and primary.dig(f"www.{zone}")[0] == "NOERROR"


def test_a_delete_named_forgets_when_killed_is_done_again(make_bindcar, own_named, unique):
    """named answers delzone before its NZD forgets the zone: killed in that moment, it
    starts with the zone again, and no file (bindcar removed it).  That state is made
    here by hand; bindcar, on its next connection to the new named, deletes it again."""
    server = make_bindcar(own_named)
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    path = os.path.join(server.zone_dir, f"{zone}.zone")
    text = open(path).read()
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    with open(path, "w") as f:                      # named's NZD keeps the zone ...
        f.write(text)
    own_named.client().call(f'addzone {zone} {{ type primary; file "{path}"; }};')
    os.unlink(path)                                 # ... and bindcar removed its file
    own_named.stop(signal.SIGKILL)
    own_named.start()
    assert "loaded: no" in server.request("GET", f"/api/v1/zones/{zone}/status")[1]["details"]
    poll(lambda: not served(own_named, zone, "showzone"), 10, "the zone to be deleted again")
    assert files_of(server.zone_dir) == []
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201


def test_named_killed_then_restarted(make_bindcar, own_named, unique):
    server = make_bindcar(own_named, RNDC_TIMEOUT="2")
    before, after = f"{unique}-a.example", f"{unique}-b.example"
    assert server.request("POST", "/api/v1/zones", zone_body(before))[0] == 201
    own_named.stop(signal.SIGKILL)
    started = time.monotonic()
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(after))
    assert (status, body["error"]) == (503, "named is not reachable over RNDC")
    assert "refused the connection" in body["details"] and time.monotonic() - started < 3
    assert zone_files(server, after) == []
    time.sleep(bindcar_module.READY_CACHE + 0.1)
    assert server.request("GET", "/ready")[0] == 503
    own_named.start()
    assert server.request("POST", "/api/v1/zones", zone_body(after))[0] == 201
    assert own_named.dig(f"www.{before}")[0] == "NOERROR"       # named kept it (its NZD)
    assert own_named.dig(f"www.{after}")[0] == "NOERROR"


def test_a_zone_named_keeps_without_its_file_can_be_deleted(make_bindcar, own_named, unique,
                                                            tmp_path):
    """A power loss between named's addzone and the directory's fsync leaves named a zone
    (in its NZD) whose file at bindcar's path is gone: after a restart named has not
    loaded it, bindcar does not list it, and a DELETE clears it (nothing is on disk)."""
    zone_dir = str(tmp_path / "zones")
    os.mkdir(zone_dir)
    server = make_bindcar(own_named, zone_dir=zone_dir)
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    server.stop()
    own_named.stop(signal.SIGKILL)
    os.unlink(os.path.join(zone_dir, f"{zone}.zone"))      # the name the power loss lost
    own_named.start()
    server = make_bindcar(own_named, zone_dir=zone_dir)
    assert zone not in server.request("GET", "/api/v1/zones")[1]["zones"]
    status, body, _ = server.request("GET", f"/api/v1/zones/{zone}/status")
    assert status == 200 and "loaded: no" in body["details"]
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
    assert status == 409 and "already exists" in body["error"]
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200
    assert not served(own_named, zone) and files_of(zone_dir) == []
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert own_named.dig(f"www.{zone}")[0] == "NOERROR"


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_named_frozen_mid_operation(make_bindcar, own_named, unique, operation):
    server = make_bindcar(own_named, RNDC_TIMEOUT="1")
    zone = f"{unique}.example"
    if operation == "delete":
        assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    # The start's check asks named too: frozen under it, the create would meet its
    # command still owed, not a silence of its own.
    poll(lambda: any(r.get("message") == "zones checked against named"
                     for r in server.log_records()), 10, "the start's check")
    own_named.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        if operation == "create":
            status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
        else:
            status, body, _ = server.request("DELETE", f"/api/v1/zones/{zone}")
        assert status == 503 and time.monotonic() - started < 5
        assert "within 1 s" in body["details"]
    finally:
        own_named.proc.send_signal(signal.SIGCONT)
    if operation == "create":       # named adds the zone it held, then bindcar undoes it
        poll(lambda: zone_files(server, zone) == [] and not served(own_named, zone), 10,
             "the create to be undone")
        assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    else:
        assert served(own_named, zone) and zone_files(server, zone) == [f"{zone}.zone"]
        assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


def test_bindcar_killed_mid_create_then_started_again(make_bindcar, named, relay, unique):
    env = {"RNDC_SERVER": f"127.0.0.1:{relay.port}", "RNDC_TIMEOUT": "5"}
    first = make_bindcar(named, **env)
    zone = f"{unique}.example"
    relay.fail("addzone", "hold")                              # named never hears of it
    def create():
        try:
            first.request("POST", "/api/v1/zones", zone_body(zone))
        except OSError:
            pass                                               # bindcar is killed under it

    threading.Thread(target=create, daemon=True).start()
    deadline = time.monotonic() + 10
    while "addzone" not in relay.seen:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.stop(signal.SIGKILL)
    assert zone_files(first, zone) == [f"{zone}.zone"] and not served(named, zone)
    with open(os.path.join(first.zone_dir, ".bindcar-x.zone.99.tmp"), "w") as f:
        f.write("half")
    second = make_bindcar(named, zone_dir=first.zone_dir, **env)
    deadline = time.monotonic() + 10
    while not any(r.get("zone") == zone for r in second.log_records()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    messages = {r["message"] for r in second.log_records()}
    assert "removed a temporary file left by an earlier crash" in messages
    assert second.request("GET", "/api/v1/zones")[1]["zones"] == []
    assert second.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert named.dig(f"www.{zone}")[0] == "NOERROR"


def test_bindcar_killed_mid_delete_of_a_zone_named_rewrote(make_bindcar, named, relay, unique):
    """named has rewritten the zone's file in its own format (rndc sync, as it does 15
    minutes after an update and when it stops), so bindcar's marker is gone; bindcar is
    killed after named deleted the zone and before its files went: the next start
    finishes the delete, and the name can be created again."""
    env = {"RNDC_SERVER": f"127.0.0.1:{relay.port}", "RNDC_TIMEOUT": "5"}
    first = make_bindcar(named, **env)
    zone = f"{unique}.example"
    assert first.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    assert nsupdate(named, zone, f"update add j.{zone} 60 A 192.0.2.3").returncode == 0
    named.client().call(f"sync {zone}")
    path = os.path.join(first.zone_dir, f"{zone}.zone")
    poll(lambda: not open(path).read().startswith(";"), 10, "named to rewrite the file")
    relay.fail("delzone", "hang")                              # named deletes; no answer yet

    def delete():
        try:
            first.request("DELETE", f"/api/v1/zones/{zone}")
        except OSError:
            pass                                               # bindcar is killed under it

    threading.Thread(target=delete, daemon=True).start()
    poll(lambda: "delzone" in relay.seen and not served(named, zone), 10, "the delzone")
    first.stop(signal.SIGKILL)
    assert f"{zone}.zone" in zone_files(first, zone)
    second = make_bindcar(named, zone_dir=first.zone_dir, **env)
    poll(lambda: files_of(second.zone_dir) == [], 10, "the delete and its note to be finished")
    assert second.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert named.dig(f"j.{zone}")[0] == "NXDOMAIN" and named.dig(f"www.{zone}")[0] == "NOERROR"


def test_a_create_clears_the_note_an_earlier_delete_left(make_bindcar, named, unique):
    """A delete whose note could not be removed leaves it: the next create of the name
    removes it, or the next start would take the new zone for a delete cut short."""
    server = make_bindcar(named)
    zone = f"{unique}.example"
    zonefile.mark_deleting(server.zone_dir, zone)
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert zonefile.zones_being_deleted(server.zone_dir) == []
    server.stop()
    server.start()
    poll(lambda: any(r.get("message") == "zones checked against named"
                     for r in server.log_records()), 10, "the start's check")
    assert server.request("GET", "/api/v1/zones")[1]["zones"] == [zone]
    assert named.dig(f"www.{zone}")[0] == "NOERROR"
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


# ------------------------------------------------------------------ the zone directory fails

def big_zone(zone, records=3000):
    return zone_body(zone, records=[{"name": f"host{i}", "type": "A", "value": "192.0.2.7"}
                                    for i in range(records)])


def test_zone_directory_full(make_bindcar, named, unique):
    server = make_bindcar(named, start=False)
    limit = 64 * 1024                                          # RLIMIT_FSIZE: "disk full"
    server.popen = {"preexec_fn": lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                              (limit, limit))}
    server.start()
    zone = f"{unique}.example"
    status, body, _ = server.request("POST", "/api/v1/zones", big_zone(zone))
    assert status == 507 and body["error"] == f"Cannot write the zone file of {zone}: " \
                                              "File too large"
    assert files_of(server.zone_dir) == [] and not served(named, zone)
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201   # small fits


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs for a zone directory (root only), and a filler that fills it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        pytest.skip("needs root and tmpfs, for a disk that fills up")
    yield str(mount)
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory):
    """Write a filler file until the disk is full; its path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(1024):
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass                                    # ENOSPC: full
    finally:
        os.close(fd)
    return path


def test_an_update_named_cannot_journal_on_a_full_disk_is_507(make_bindcar, named, unique,
                                                              small_disk):
    """named answers SERVFAIL when it cannot write the zone's journal: the answer says
    the disk is full, not that the zone's allow-update is wrong."""
    server = make_bindcar(named, zone_dir=small_disk)
    zone = f"{unique}.example"
    assert server.request("POST", "/api/v1/zones", zone_body(zone, key="update-key"))[0] == 201
    filler = fill(small_disk)
    record = {"name": "full", "type": "TXT", "value": "x" * 200}
    status, body, _ = server.request("POST", f"/api/v1/zones/{zone}/records", record)
    assert status == 507 and "disk of the zone directory is full" in body["error"], body
    assert named.dig(f"full.{zone}", "TXT")[0] == "NXDOMAIN"
    os.unlink(filler)
    assert server.request("POST", f"/api/v1/zones/{zone}/records", record)[0] == 201
    assert server.request("DELETE", f"/api/v1/zones/{zone}")[0] == 200


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to run bindcar as UID 101) and /usr/bin/python3")
def bindcar_as_uid_101(make_bindcar, named, app):
    """bindcar run as the image runs it (UID 101) on ``app``'s zone directory."""
    zone_dir = os.path.join(app, "zones")
    server = make_bindcar(named, start=False, zone_dir=zone_dir)
    server.command = [SYSTEM_PYTHON, "-E", "-s", "-B", "-m", "bindcar"]
    server.popen = {"user": 101, "group": 101, "extra_groups": [],
                    "cwd": os.path.join(app, "app")}
    return server.start(), zone_dir


def assert_create_fails_on_the_disk(server, zone):
    status, body, _ = server.request("POST", "/api/v1/zones", zone_body(zone))
    assert status == 500
    assert body["error"] == f"Cannot write the zone file of {zone}: Permission denied"


def test_zone_directory_read_only(make_bindcar, named, unique, world_readable_app):
    server, zone_dir = bindcar_as_uid_101(make_bindcar, named, world_readable_app)
    zone = f"{unique}.example"
    os.chmod(zone_dir, 0o555)
    try:
        assert_create_fails_on_the_disk(server, zone)
        time.sleep(bindcar_module.READY_CACHE + 0.1)
        status, ready, _ = server.request("GET", "/ready")
        assert status == 503 and "zone directory: not writable" in ready["checks"]
        assert files_of(zone_dir) == [] and not served(named, zone)
    finally:
        os.chmod(zone_dir, 0o755)
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to run bindcar as UID 101) and /usr/bin/python3")
def test_a_create_whose_fsync_fails_while_named_adds_it_is_undone(make_bindcar, named, unique,
                                                                  world_readable_app):
    """The zone file's fsyncs run while named adds the zone.  With the directory at
    mode 0311 bindcar may create and link its file but not open the directory to fsync
    it: named has taken the zone by then, so it is deleted again and nothing is left."""
    server, zone_dir = bindcar_as_uid_101(make_bindcar, named, world_readable_app)
    zone = f"{unique}.example"
    os.chmod(zone_dir, 0o311)
    try:
        assert_create_fails_on_the_disk(server, zone)
        assert not served(named, zone)
        assert zone not in server.request("GET", "/api/v1/zones")[1]["zones"]
        assert files_of(zone_dir) == []
        assert any(r["message"] == "rolled back a create that failed part-way" and
                   r.get("zone") == zone for r in server.log_records())
    finally:
        os.chmod(zone_dir, 0o755)
    assert server.request("POST", "/api/v1/zones", zone_body(zone))[0] == 201
    assert named.dig(f"www.{zone}")[0] == "NOERROR"


# ------------------------------------------------------------------ races

def parallel(count, fn):
    results, start = [None] * count, threading.Event()

    def run(i):
        start.wait(10)
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(120)
    return results


def test_fifty_creates_of_one_zone_then_fifty_more_keep_file_and_journal(bindcar, named,
                                                                        unique):
    zone = f"{unique}.example"
    body = zone_body(zone, key="update-key")
    results = parallel(50, lambda i: bindcar.request("POST", "/api/v1/zones", body)[0])
    assert sorted(results) == [201] + [409] * 49
    assert nsupdate(named, zone, f"update add j.{zone} 60 A 192.0.2.3").returncode == 0
    base = os.path.join(bindcar.zone_dir, f"{zone}.zone")
    before = {p: open(p, "rb").read() for p in (base, base + ".jnl")}
    other = zone_body(zone, key="update-key", ttl=7)
    results = parallel(50, lambda i: bindcar.request("POST", "/api/v1/zones", other)[0])
    assert results == [409] * 50
    assert {p: open(p, "rb").read() for p in before} == before
    assert named.dig(f"j.{zone}")[0] == "NOERROR"
    bindcar.request("DELETE", f"/api/v1/zones/{zone}")


def test_fifty_creates_of_different_zones(bindcar, named, unique):
    zones = [f"{unique}-{i}.example" for i in range(50)]
    results = parallel(50, lambda i: bindcar.request("POST", "/api/v1/zones",
                                                     zone_body(zones[i]))[0])
    assert results == [201] * 50
    assert all(named.dig(f"www.{z}")[0] == "NOERROR" for z in zones)
    results = parallel(50, lambda i: bindcar.request("DELETE", f"/api/v1/zones/{zones[i]}")[0])
    assert results == [200] * 50


# ------------------------------------------------------------------ HTTP abuse

def test_ten_megabyte_body_is_refused_unread(bindcar):
    with socket.create_connection(("127.0.0.1", bindcar.port), timeout=5) as sock:
        sock.sendall(b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 10485760\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\n\r\n" + b"x" * 65536)
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    status, body, head = status_and_json(data)
    assert status == 413 and "Connection: close" in head and body["error"].startswith("Body is")


def test_expect_100_continue_is_sent_only_for_a_body_that_fits(bindcar):
    with socket.create_connection(("127.0.0.1", bindcar.port), timeout=5) as sock:
        sock.sendall(b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 10485760\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", bindcar.port), timeout=5) as sock:
        sock.sendall(b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Type: application/json\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: 2\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /health HTTP/1.1\r\n\r\n", 400),                                     # no Host
    (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: evil/path\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
    (b"GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
])
def test_malformed_requests_get_a_json_4xx(bindcar, request_bytes, status):
    got, body, _ = status_and_json(raw(bindcar, request_bytes))
    assert got == status and isinstance(body["error"], str)


def test_http_1_0_without_host_is_served(bindcar):
    got, body, head = status_and_json(raw(bindcar, b"GET /health HTTP/1.0\r\n\r\n"))
    assert (got, body["status"]) == (200, "healthy") and "Connection: close" in head


def test_two_hundred_idle_connections_do_not_slow_health(bindcar):
    idle = [socket.create_connection(("127.0.0.1", bindcar.port)) for _ in range(200)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        assert bindcar.request("GET", "/health")[0] == 200
        assert time.monotonic() - started < 1
    finally:
        for sock in idle:
            sock.close()


def test_past_the_connection_cap_the_answer_is_503_at_once(make_bindcar, named):
    """When every connection is at work (an authenticated body coming): none to close."""
    server = make_bindcar(named, MAX_CONNECTIONS_PER_CLIENT="1000")
    held = [socket.create_connection(("127.0.0.1", server.port))
            for _ in range(bindcar_module.MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n{")
        time.sleep(0.3)
        data = raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body, _ = status_and_json(data)
        assert (status, body["error"]) == (503, "Too many connections")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert server.request("GET", "/health")[0] == 200


@pytest.mark.slow
def test_a_body_that_never_arrives_times_out_and_frees_the_thread(bindcar):
    def threads():
        with open(f"/proc/{bindcar.proc.pid}/status") as f:
            return int(f.read().split("Threads:")[1].split()[0])

    def settle(want=None, seconds=5):
        """The thread count once it holds still (start-up threads end on their own)."""
        deadline, last = time.monotonic() + seconds, None
        while time.monotonic() < deadline:
            now = threads()
            if now == last and (want is None or now == want):
                return now
            last = now
            time.sleep(0.25)
        return threads()

    before = settle()
    head = b"POST /api/v1/zones HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n" \
        b"Content-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", bindcar.port), timeout=60) as sock:
        sock.sendall(head + b"\r\n{")                       # a stranger's body is not waited for
        assert sock.recv(4096).startswith(b"HTTP/1.1 401 ") and sock.recv(4096) == b""
    with socket.create_connection(("127.0.0.1", bindcar.port), timeout=60) as sock:
        sock.sendall(head + f"Authorization: Bearer {TOKEN}\r\n\r\n{{".encode())
        assert settle(before + 1) == before + 1                # its thread waits for the body
        started = time.monotonic()
        assert sock.recv(4096) == b""                       # closed, no answer owed
        waited = time.monotonic() - started
    assert bindcar_module.SOCKET_TIMEOUT - 1 < waited < bindcar_module.SOCKET_TIMEOUT + 5
    assert settle(before) == before                          # and the thread is gone


# ------------------------------------------------------------------ secrets

def test_bad_tokens_all_get_the_same_answer(bindcar):
    for token in ("", "x", TOKEN[:-1], TOKEN + "x", "y" * len(TOKEN), TOKEN.upper(),
                  "é" * 10):
        headers = {"Authorization": f"Bearer {token}"}
        status, body, _ = bindcar.request("GET", "/api/v1/zones", token=None, headers=headers)
        assert status == 401 and body["error"] in ("Unauthorized", "Empty token")
        assert token == "" or token not in json.dumps(body)


def test_secrets_stay_out_of_bodies_metrics_and_process_arguments(bindcar, named):
    secrets = [TOKEN, named.secrets["hmac-sha256"]]
    texts = [bindcar.request("GET", "/metrics", token=None)[1],
             json.dumps(bindcar.request("GET", "/api/v1/zones", token=TOKEN + "1")[1]),
             json.dumps(bindcar.request("GET", "/api/v1/server/status")[1]),
             json.dumps(bindcar.request("GET", "/ready")[1])]
    with open(f"/proc/{bindcar.proc.pid}/cmdline", "rb") as f:
        texts.append(f.read().decode())
    for text in texts:
        for secret in secrets:
            assert secret not in text
