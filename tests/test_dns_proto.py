"""dns_proto against ISC's captured exchanges and against a real named."""

import base64
import glob
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import dns_proto
from dns_proto import DnsClient, Record
from conftest import ROOT

VECTORS = sorted(glob.glob(os.path.join(ROOT, os.pardir, "shared", "dns-update-vectors",
                                        "*.json")))


def vector(path):
    with open(path) as f:
        data = json.load(f)
    data["secret"] = base64.b64decode(data["secret_b64"])
    data["server_secret"] = base64.b64decode(data["server_secret_b64"])
    data["wires"] = [bytes.fromhex(m["hex"]) for m in data["messages"]]
    return data


# ------------------------------------------------------------------ the captured exchanges

def test_there_are_vectors():
    assert len(VECTORS) >= 10, "shared/dns-update-vectors is missing"


def verify_exchange(data, flip=None):
    """Verify every MAC of a captured exchange; ``flip`` = (message, byte) to corrupt."""
    prior = None
    for i, (message, wire) in enumerate(zip(data["messages"], data["wires"])):
        if flip and flip[0] == i:
            wire = bytearray(wire)
            wire[flip[1]] ^= 0x01
            wire = bytes(wire)
        decoded = dns_proto.decode_message(wire)
        request = message["direction"] == "client->server"
        secret = data["secret"] if request else data["server_secret"]
        prior = dns_proto.verify(decoded, data["tsig_key_name"], data["tsig_algorithm"], secret,
                                 None if request else prior, now=False, timers_only=i > 1)
    return prior


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_every_vector_decodes_and_its_macs_verify(path):
    data = vector(path)
    if data["name"] in ("wrong-secret", "badtime-replayed-request"):
        with pytest.raises(dns_proto.DnsTsigError) as e:
            verify_exchange(data)
        assert ("BADSIG" if data["name"] == "wrong-secret" else "BADTIME") in str(e.value)
        assert data["secret_b64"] not in str(e.value)
        return
    verify_exchange(data)
    reply = dns_proto.decode_message(data["wires"][1])
    assert dns_proto.RCODES[reply.rcode] in data["result"]


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_a_flipped_byte_fails_verification(path):
    data = vector(path)
    if data["name"] in ("wrong-secret", "badtime-replayed-request"):
        return
    for message in range(len(data["wires"])):
        with pytest.raises(dns_proto.DnsError):
            verify_exchange(data, flip=(message, 13))       # inside the question / first name


def test_badtime_says_how_far_the_clocks_are_apart():
    data = vector([v for v in VECTORS if "badtime" in v][0])
    request = dns_proto.decode_message(data["wires"][0])
    mac = dns_proto.parse_tsig(request, request.tsig())["mac"]
    reply = dns_proto.decode_message(data["wires"][1])
    with pytest.raises(dns_proto.DnsTsigError) as e:                # verified, then told
        dns_proto.verify(reply, data["tsig_key_name"], data["tsig_algorithm"],
                         data["server_secret"], mac, now=False)
    assert "BADTIME" in str(e.value) and "named's clock is +" in str(e.value)


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_the_unsigned_part_re_encodes_byte_for_byte(path):
    for wire in vector(path)["wires"]:
        msg = dns_proto.decode_message(wire)
        tsig = msg.tsig()
        unsigned = bytearray(wire[:tsig.start] if tsig else wire)
        if tsig:
            struct.pack_into("!H", unsigned, 10, len(msg.additional) - 1)
        built = dns_proto.Builder(msg.id, msg.flags)
        for labels, rtype, rclass in msg.question:
            built.question(dns_proto.labels_text(labels, lower=False), rtype, rclass)
        sections = (msg.answer, msg.authority, msg.additional[:-1] if tsig else msg.additional)
        for section, records in enumerate(sections, 1):
            for rr in records:
                rtype = dns_proto.TYPE_NAMES.get(rr.type, f"TYPE{rr.type}")
                value = None if not rr.rdata_length else dns_proto.rdata_to_text(
                    rtype, wire, rr.rdata_start, rr.rdata_length)
                built.record(section, dns_proto.labels_text(rr.labels, lower=False),
                             dns_proto.TYPES.get(rtype, rr.type), rr.rclass, rr.ttl, value)
        assert built.bytes() == bytes(unsigned)


def test_the_multi_message_axfr_reads_as_one_zone():
    data = vector([v for v in VECTORS if "axfr" in v][0])
    records = []
    for wire in data["wires"][1:]:
        msg = dns_proto.decode_message(wire)
        records += [msg.record(rr) for rr in msg.answer]
    assert records[0] == records[-1] and records[0].type == "SOA" and len(records) == 3204


def add_a_reply():
    data = vector([v for v in VECTORS if v.endswith("add-a.json")][0])
    request = dns_proto.decode_message(data["wires"][0])
    mac = dns_proto.parse_tsig(request, request.tsig())["mac"]
    return data, dns_proto.decode_message(data["wires"][1]), mac


def test_an_unsigned_reply_to_a_signed_request_is_refused():
    data, reply, mac = add_a_reply()
    unsigned = bytearray(reply.wire[:reply.tsig().start])
    struct.pack_into("!H", unsigned, 10, 0)
    with pytest.raises(dns_proto.DnsTsigError, match="not signed"):
        dns_proto.verify(dns_proto.decode_message(bytes(unsigned)), data["tsig_key_name"],
                         data["tsig_algorithm"], data["server_secret"], mac, now=False)


def test_a_truncated_mac_and_another_key_name_are_refused():
    data, reply, mac = add_a_reply()
    fields = dns_proto.parse_tsig(reply, reply.tsig())
    cut = bytearray(reply.wire)
    at = reply.wire.index(fields["mac"]) - 2                   # the MAC size, then the MAC
    struct.pack_into("!H", cut, at, 16)
    del cut[at + 2 + 16:at + 2 + 32]
    struct.pack_into("!H", cut, reply.tsig().rdata_start - 2, reply.tsig().rdata_length - 16)
    with pytest.raises(dns_proto.DnsTsigError, match="MAC of 16 bytes"):
        dns_proto.verify(dns_proto.decode_message(bytes(cut)), data["tsig_key_name"],
                         data["tsig_algorithm"], data["server_secret"], mac, now=False)
    with pytest.raises(dns_proto.DnsTsigError, match="not 'other-key'"):
        dns_proto.verify(reply, "other-key", data["tsig_algorithm"], data["server_secret"], mac,
                         now=False)
    with pytest.raises(dns_proto.DnsTsigError, match="clock"):  # days old: past the fudge
        dns_proto.verify(reply, data["tsig_key_name"], data["tsig_algorithm"],
                         data["server_secret"], mac)


@pytest.mark.parametrize("wire", [
    b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # loop
    b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x40\x00\x01\x00\x01",  # ahead
    b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f" + b"a" * 10,         # cut
    b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40\x00\x00\x01\x00\x01",  # label type
    b"\x00\x01\x00\x00",                                                            # short
])
def test_malformed_messages_are_refused_not_followed(wire):
    with pytest.raises(dns_proto.DnsConnectionError):
        dns_proto.decode_message(wire)


# ------------------------------------------------------------------ against a real named

ZONE_FILE = """\
$TTL 300
@ IN SOA ns1.{zone}. admin.{zone}. 1 3600 600 604800 300
@ IN NS ns1.{zone}.
ns1 IN A 127.0.0.1
"""

TEN_TYPES = [
    ("a", "A", "192.0.2.1"), ("aaaa", "AAAA", "2001:db8::1"),
    ("cname", "CNAME", "target.example.net."), ("mx", "MX", "10 ns1.{zone}."),
    ("txt", "TXT", '"hello \\"world\\"" "two"'), ("@", "NS", "ns9.example.net."),
    ("ptr", "PTR", "host.example.net."), ("_sip._tcp", "SRV", "1 2 5060 ns1.{zone}."),
    ("caa", "CAA", '0 issue "ca.example.net"'),
    ("@", "SOA", "ns1.{zone}. hostmaster.{zone}. 2000000000 7200 900 1209600 600"),
]


@pytest.fixture
def zone(named, unique):
    """A zone of its own on the shared named, updatable and transferable by every key."""
    name = f"{unique}.dns"
    path = os.path.join(named.dir, f"{name}.zone")
    with open(path, "w") as f:
        f.write(ZONE_FILE.format(zone=name))
    keys = " ".join(f'key "{named.key_name(a)}";' for a in named.secrets) + ' key "update-key";'
    named.client().call(f'addzone {name} {{ type primary; file "{path}"; allow-update {{ {keys} }}; '
                        f'allow-transfer {{ {keys} }}; }};')
    yield name
    named.client().call(f"delzone {name}")


def client_for(named, algorithm="hmac-sha256", **kwargs):
    return DnsClient("127.0.0.1", named.dns_port, named.key_name(algorithm), algorithm,
                     named.secrets[algorithm], **kwargs)


def dig_axfr(named, zone):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(named.dns_port), "-y",
                          f"hmac-sha256:update-key:{named.secrets['hmac-sha256']}",
                          "+nocmd", "+nostats", "+nocomments", "+noquestion", zone, "AXFR"],
                         capture_output=True, text=True, timeout=60).stdout
    records = []
    for line in out.splitlines():
        if line and not line.startswith(";"):
            name, ttl, _, rtype, value = line.split(None, 4)
            records.append(Record(name.lower(), int(ttl), rtype, value))
    return [r for r in records if r.type != "TSIG"][:-1]        # and the closing SOA


def test_each_of_the_ten_types_round_trips(named, zone):
    client = client_for(named)
    for owner, rtype, value in TEN_TYPES:
        name = zone + "." if owner == "@" else f"{owner}.{zone}."
        client.update(zone, add=[Record(name, 600, rtype, value.format(zone=zone))])
        want = Record(name, 600, rtype, value.format(zone=zone))
        assert want in client.query(name, rtype), rtype
        assert value.format(zone=zone) in [line.split(None, 4)[4]
                                           for line in named.dig(name, rtype)[1]], rtype
    transferred = client.axfr(zone)
    assert sorted(transferred) == sorted(dig_axfr(named, zone))
    assert transferred[0].type == "SOA" and int(transferred[0].value.split()[2]) == 2000000000


def test_deletes_and_prerequisites(named, zone):
    client = client_for(named)
    www = f"www.{zone}."
    client.update(zone, add=[Record(www, 300, "A", "192.0.2.1"),
                             Record(www, 300, "A", "192.0.2.2"),
                             Record(www, 300, "TXT", '"x"')])
    client.update(zone, delete=[(www, "A", "192.0.2.1")])
    assert client.query(www, "A") == [Record(www, 300, "A", "192.0.2.2")]
    with pytest.raises(dns_proto.DnsUpdateError) as e:         # must not exist, but does
        client.update(zone, forbid=[(www, "A")], add=[Record(www, 300, "A", "192.0.2.9")])
    assert e.value.rcode == "YXRRSET" and "nothing changed" in str(e.value)
    with pytest.raises(dns_proto.DnsUpdateError) as e:         # must exist, but does not
        client.update(zone, require=[(www, "AAAA", None)], delete=[(www, "A", None)])
    assert e.value.rcode == "NXRRSET"
    assert client.query(www, "A") == [Record(www, 300, "A", "192.0.2.2")]
    client.update(zone, require=[(www, "A", "192.0.2.2")], delete=[(www, "A", "192.0.2.2")],
                  add=[Record(www, 300, "A", "192.0.2.3")])     # a replace, all or nothing
    assert client.query(www, "A") == [Record(www, 300, "A", "192.0.2.3")]
    client.update(zone, delete=[(www, "A", None)])
    assert client.query(www, "A") == [] and client.query(www, "TXT")
    client.update(zone, delete=[(www, "ANY", None)])
    assert client.query(www, "TXT") == [] and client.query(f"nosuch.{zone}", "A") == []


def test_then_delete_goes_after_the_additions(named, zone):
    """named keeps the apex NS set from going empty: a delete of its only value before
    the add is ignored (RFC 2136 §3.4.2.4), after it, it replaces."""
    client = client_for(named)
    apex, old, new = f"{zone}.", f"ns1.{zone}.", "ns.example.net."
    client.update(zone, delete=[(apex, "NS", old)], add=[Record(apex, 300, "NS", new)])
    assert sorted(r.value for r in client.query(apex, "NS")) == [new, old]   # ignored
    client.update(zone, delete=[(apex, "NS", new)])
    client.update(zone, add=[Record(apex, 300, "NS", new)], then_delete=[(apex, "NS", old)])
    assert [r.value for r in client.query(apex, "NS")] == [new]


def test_a_message_over_65535_bytes_is_refused_before_sending(named, zone):
    client = client_for(named)
    texts = [Record(f"big.{zone}.", 300, "TXT", f'"{i:04d}{"x" * 250}"') for i in range(300)]
    with pytest.raises(dns_proto.MessageTooLarge, match="65535"):
        client.update(zone, add=texts)
    assert client.query(f"big.{zone}.", "TXT") == []
    client.update(zone, add=texts[:90])         # it fits (named 9.18 takes 100 per RRset)
    assert len(client.query(f"big.{zone}.", "TXT")) == 90


@pytest.mark.parametrize("algorithm", sorted(dns_proto.ALGORITHMS))
def test_all_six_algorithms(named, zone, algorithm):
    client = client_for(named, algorithm)
    name = f"alg.{zone}."
    client.update(zone, add=[Record(name, 60, "TXT", f'"{algorithm}"')])
    assert client.query(name, "TXT") == [Record(name, 60, "TXT", f'"{algorithm}"')]


def test_refusals_are_named_in_words(named, zone, unique):
    wrong = DnsClient("127.0.0.1", named.dns_port, "update-key", "hmac-sha256",
                      base64.b64encode(b"w" * 32).decode())
    with pytest.raises(dns_proto.DnsTsigError) as e:
        wrong.update(zone, add=[Record(f"x.{zone}.", 60, "A", "192.0.2.1")])
    assert "BADSIG" in str(e.value) and "update-key" in str(e.value)
    unknown = DnsClient("127.0.0.1", named.dns_port, "nosuch-key", "hmac-sha256",
                        named.secrets["hmac-sha256"])
    with pytest.raises(dns_proto.DnsTsigError) as e:
        unknown.update(zone, add=[Record(f"x.{zone}.", 60, "A", "192.0.2.1")])
    assert "BADKEY" in str(e.value) and "nosuch-key" in str(e.value)
    client = client_for(named)
    with pytest.raises(dns_proto.DnsUpdateError) as e:
        client.update(f"nosuch-{unique}.dns", add=[Record(f"x.nosuch-{unique}.dns.", 60, "A",
                                                          "192.0.2.1")])
    assert e.value.rcode == "NOTAUTH"
    with pytest.raises(dns_proto.DnsUpdateError) as e:           # static.test: no allow-update
        client.update("static.test", add=[Record("x.static.test.", 60, "A", "192.0.2.1")])
    assert e.value.rcode == "REFUSED"
    named.client().call(f"freeze {zone}")
    try:
        with pytest.raises(dns_proto.DnsUpdateError) as e:
            client.update(zone, add=[Record(f"x.{zone}.", 60, "A", "192.0.2.1")])
        assert e.value.rcode == "REFUSED"
    finally:
        named.client().call(f"thaw {zone}")
    assert client.query(f"x.{zone}", "A") == []


def test_named_restarted_and_idle_close_are_survived(own_named, tmp_path):
    own_named.client().call('addzone r.dns { type primary; file "static.test.zone"; '
                            'allow-update { key "update-key"; }; };')
    client = DnsClient("127.0.0.1", own_named.dns_port, "update-key", "hmac-sha256",
                       own_named.secrets["hmac-sha256"])
    assert client.query("www.static.test", "A")
    own_named.restart()
    assert client.query("www.static.test", "A")           # a new connection, at once
    own_named.restart()
    client.update("r.dns", add=[Record("new.r.dns.", 60, "A", "192.0.2.7")])   # and so here
    assert client.query("new.r.dns", "A") == [Record("new.r.dns.", 60, "A", "192.0.2.7")]
    client.close()


def test_an_update_named_answers_late_is_waited_for(own_named):
    """An UPDATE named holds while stopped is owed: the next request waits for its answer
    (its undo must not overtake it), and ``settle`` waits for it too."""
    own_named.client().call('addzone late.dns { type primary; file "static.test.zone"; '
                            'allow-update { key "update-key"; }; };')
    client = DnsClient("127.0.0.1", own_named.dns_port, "update-key", "hmac-sha256",
                       own_named.secrets["hmac-sha256"], timeout=0.5)
    record = Record("x.late.dns.", 60, "A", "192.0.2.9")
    assert client.query("www.static.test", "A")
    own_named.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(dns_proto.DnsUnanswered):
            client.update("late.dns", add=[record])
        with pytest.raises(dns_proto.DnsUnanswered, match="still not answered"):
            client.update("late.dns", delete=[("x.late.dns", "A", None)])
        with pytest.raises(dns_proto.DnsUnanswered):
            client.settle()
    finally:
        own_named.proc.send_signal(signal.SIGCONT)
    client.settle()
    other = DnsClient("127.0.0.1", own_named.dns_port)
    assert other.query("x.late.dns", "A") == [record]         # applied, and not undone
    client.update("late.dns", delete=[("x.late.dns", "A", None)])
    assert other.query("x.late.dns", "A") == []
    other.close()
    client.close()


def test_many_threads_share_one_client(named, zone):
    client = client_for(named)
    errors = []

    def work(i):
        try:
            name = f"t{i}.{zone}."
            client.update(zone, add=[Record(name, 60, "A", f"192.0.2.{i}")])
            assert client.query(name, "A") == [Record(name, 60, "A", f"192.0.2.{i}")]
        except Exception as e:              # noqa: BLE001 - collected for the assert
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len([r for r in client.axfr(zone) if r.type == "A" and  # not the apex: its
                r.name.split(".")[0][1:].isdigit()]) == 20             # label may be digits


class Relay:
    """A TCP relay to named's DNS port that spoils the next reply as told."""

    def __init__(self, named, spoil):
        self.target, self.spoil = ("127.0.0.1", named.dns_port), spoil
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        with client, socket.create_connection(self.target) as upstream:
            head = client.recv(2, socket.MSG_WAITALL)
            upstream.sendall(head + client.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL))
            head = upstream.recv(2, socket.MSG_WAITALL)
            reply = upstream.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
            client.sendall(self.spoil(head, reply))
            client.recv(1)                      # hold the connection until the client goes

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("spoil, error", [
    (lambda h, r: h + r[:20] + bytes([r[20] ^ 1]) + r[21:], dns_proto.DnsError),
    (lambda h, r: h + r[:len(r) // 2], dns_proto.DnsConnectionError),
    (lambda h, r: b"\xff\xff" + r[:10], dns_proto.DnsConnectionError),
    (lambda h, r: h + bytes([r[0] ^ 1]) + r[1:], dns_proto.DnsConnectionError),   # another ID
])
def test_a_spoiled_reply_is_a_clear_error_never_a_hang(named, zone, spoil, error):
    relay = Relay(named, spoil)
    try:
        client = DnsClient("127.0.0.1", relay.port, "update-key", "hmac-sha256",
                           named.secrets["hmac-sha256"], timeout=2)
        with pytest.raises(error) as e:
            client.query(f"ns1.{zone}", "A")
        assert named.secrets["hmac-sha256"] not in str(e.value)
        client.close()
    finally:
        relay.close()


def test_an_unsigned_client_gets_unsigned_answers(named, zone):
    client = DnsClient("127.0.0.1", named.dns_port)
    assert client.query(f"ns1.{zone}", "A") == [Record(f"ns1.{zone}.", 300, "A", "127.0.0.1")]


def test_an_idle_close_is_survived(quick_idle_named):
    client = DnsClient("127.0.0.1", quick_idle_named.dns_port)
    assert client.query("www.static.test", "A")
    deadline = time.monotonic() + 10                 # named closes idle TCP after 1 s here
    while client._idle():                           # (the client would see it before use)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.query("www.static.test", "A")     # on a new connection, nothing lost


def test_an_axfr_of_twenty_thousand_records_equals_digs(named, unique):
    name = f"{unique}-big.dns"
    path = os.path.join(named.dir, f"{name}.zone")
    with open(path, "w") as f:
        f.write(ZONE_FILE.format(zone=name))
        f.writelines(f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n"
                     for i in range(20000))
    named.client().call(f'addzone {name} {{ type primary; file "{path}"; '
                        'allow-transfer { key "update-key"; }; };')
    try:
        records = DnsClient("127.0.0.1", named.dns_port, "update-key", "hmac-sha256",
                            named.secrets["hmac-sha256"]).axfr(name)
        assert len(records) == 20003 and records == dig_axfr(named, name)
    finally:
        named.client().call(f"delzone {name}")


# ------------------------------------------------------------------ hostile servers

@pytest.mark.parametrize("hexed, call", [
    ("a34ea800000100000000000103757064076578616d706c650000060001076c61622d6b65790000fa00ff"
     "00000000000e0b686d61632d7368613235360000", "verify"),            # a TSIG cut short
    ("db04a809000100000000000103757064076578616d706c650000060001076c61622d6b657900000f00ff"
     "000000000000", "record"),                                        # an MX with no data
])
def test_hostile_replies_raise_dns_errors_only(hexed, call):
    msg = dns_proto.decode_message(bytes.fromhex(hexed))
    with pytest.raises(dns_proto.DnsError):
        if call == "verify":
            dns_proto.verify(msg, "lab-key", "hmac-sha256", b"k", b"", now=False)
        else:
            msg.record(msg.additional[0])


def test_a_tsig_record_of_another_class_or_with_junk_is_refused():
    data, reply, mac = add_a_reply()
    rr = reply.tsig()
    other_class = bytearray(reply.wire)
    struct.pack_into("!H", other_class, rr.rdata_start - 8, dns_proto.IN)
    junk = bytearray(reply.wire + b"\0\0\0\0")
    struct.pack_into("!H", junk, rr.rdata_start - 2, rr.rdata_length + 4)
    for wire in (other_class, junk):
        with pytest.raises(dns_proto.DnsTsigError, match="malformed TSIG"):
            dns_proto.verify(dns_proto.decode_message(bytes(wire)), data["tsig_key_name"],
                             data["tsig_algorithm"], data["server_secret"], mac, now=False)


class Server:
    """A fake DNS server on loopback that answers one request with ``answer(request)``,
    sent in chunks of ``chunk`` bytes every ``pause`` seconds."""

    def __init__(self, answer, chunk=65536, pause=0.0):
        self.answer, self.chunk, self.pause = answer, chunk, pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                head = conn.recv(2, socket.MSG_WAITALL)
                request = conn.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                data = self.answer(request)
                for i in range(0, min(len(data), 200), self.chunk):    # bounded: 200 bytes
                    conn.sendall(data[i:i + self.chunk])
                    time.sleep(self.pause)
                conn.recv(1)
        except OSError:
            pass

    def close(self):
        self.listener.close()


def test_a_reply_trickling_in_is_cut_off_at_the_timeout():
    server = Server(lambda request: struct.pack("!H", 100) + request[:2] + b"\x80" * 98,
                    chunk=1, pause=0.3)
    try:
        client = DnsClient("127.0.0.1", server.port, timeout=1)
        started = time.monotonic()
        with pytest.raises(dns_proto.DnsConnectionError, match="within 1 s"):
            client.query("example.com", "A")
        assert time.monotonic() - started < 3
    finally:
        server.close()


def test_a_request_echoed_back_is_not_a_reply():
    server = Server(lambda request: struct.pack("!H", len(request)) + request)
    try:
        with pytest.raises(dns_proto.DnsConnectionError, match="not a response"):
            DnsClient("127.0.0.1", server.port, timeout=2).update(
                "example.com", add=[Record("www.example.com.", 60, "A", "192.0.2.1")])
    finally:
        server.close()


def test_values_keep_their_case_and_their_escapes(named, zone):
    client = client_for(named)
    for name, rtype, value in ((f"c.{zone}.", "CNAME", "Target.Example.NET."),
                               (f"t.{zone}.", "TXT", '"x\\" "'),
                               (f"t.{zone}.", "TXT", '"' + "y" * 300 + '"')):
        client.update(zone, add=[Record(name, 60, rtype, value)])
        got = [r.value for r in client.query(name, rtype)]
        assert value in got or value == '"' + "y" * 300 + '"' and \
            '"' + "y" * 255 + '" "' + "y" * 45 + '"' in got
    client.update(zone, delete=[(f"t.{zone}.", "TXT", '"x\\" "')])   # by the value it printed
    assert '"x\\" "' not in [r.value for r in client.query(f"t.{zone}.", "TXT")]
    with pytest.raises(ValueError):
        client.query(zone, "AXFR")


def test_a_socket_past_descriptor_1023_still_works(named):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot open 1,100 files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [open(os.devnull) for _ in range(1100)]
    try:
        client = DnsClient("127.0.0.1", named.dns_port)
        assert client.query("www.static.test", "A") and client.query("www.static.test", "A")
        assert client._sock.fileno() > 1023
        client.close()
    finally:
        for f in held:
            f.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------ datagrams: NOTIFY, SOA

def test_many_questions_at_once_each_answered_in_order(make_named):
    """SOA queries and NOTIFYs to two servers on one socket, more than the window:
    each reply goes with its own request, whatever order they come back in."""
    secondary = make_named(address="127.0.0.2", extra_conf=(
        'zone "sec.test" { type secondary; primaries { 127.0.0.1 port 9; }; };\n'))
    primary = make_named()
    asks = [("127.0.0.2", secondary.dns_port, dns_proto.soa_query("static.test")),
            ("127.0.0.1", primary.dns_port, dns_proto.soa_query("static.test")),
            ("127.0.0.2", secondary.dns_port, dns_proto.soa_query("nothere.test")),
            ("127.0.0.2", secondary.dns_port, dns_proto.soa_query("sec.test")),
            ("127.0.0.2", secondary.dns_port, dns_proto.notify("sec.test")),
            ("127.0.0.1", 9, dns_proto.soa_query("static.test"))] * 30
    replies = dns_proto.ask_many(asks, timeout=1.0, window=16)
    for i in range(0, len(asks), 6):
        here, there, missing, unloaded, notified, silent = replies[i:i + 6]
        assert dns_proto.soa_serial(here, "static.test") == 2024010101
        assert dns_proto.soa_serial(there, "static.test") == 2024010101
        assert missing.rcode == 5 and dns_proto.soa_serial(missing, "nothere.test") is None
        assert unloaded.rcode == 2                      # a secondary not loaded: SERVFAIL
        assert notified.opcode == dns_proto.OPCODE_NOTIFY and notified.rcode == 5
        assert isinstance(silent, dns_proto.DnsUnanswered)
    assert "refused notify from non-primary: 127.0.0.2" in secondary.log_tail(400)


def test_a_signed_notify_is_taken_by_its_key(make_named):
    secret = base64.b64encode(b"k" * 32).decode()
    secondary = make_named(address="127.0.0.2", extra_options='allow-notify { key "xfr"; };',
                           extra_conf=(f'key "xfr" {{ algorithm hmac-sha256; secret "{secret}"; '
                                       '};\nzone "sec.test" { type secondary; primaries { '
                                       '127.0.0.1 port 9; }; };\n'))
    ask = [("127.0.0.2", secondary.dns_port, dns_proto.notify("sec.test"))]
    signed = dns_proto.ask_many(ask, 2.0, key=("xfr", "hmac-sha256", base64.b64decode(secret)))
    assert signed[0].rcode == 0 and signed[0].tsig() is not None
    wrong = dns_proto.ask_many(ask, 2.0, key=("xfr", "hmac-sha256", b"w" * 32))
    assert isinstance(wrong[0], dns_proto.DnsError) or wrong[0].rcode != 0


def test_a_name_that_is_not_an_address_is_an_error_not_a_lookup():
    assert isinstance(dns_proto.ask_many([("localhost", 53, dns_proto.soa_query("x"))])[0],
                      dns_proto.DnsConnectionError)
