"""dns_proto: named's DNS channel — UPDATE (RFC 2136), queries and AXFR, signed with TSIG;
and the secondaries' — NOTIFY (RFC 1996) and SOA queries over UDP, many at once.

    client = DnsClient("127.0.0.1", 53, "update-key", "hmac-sha256", secret_b64)
    client.update("example.com", add=[Record("www.example.com.", 300, "A", "192.0.2.1")])
    client.query("www.example.com", "A")
    # [Record(name='www.example.com.', ttl=300, type='A', value='192.0.2.1')]

    replies = ask_many([("192.0.2.2", 53, notify("example.com")),
                        ("192.0.2.2", 53, soa_query("example.com"))])

One screen per concern, in wire order: names, RDATA, messages, TSIG, the client,
datagrams.
The standard library only; imports nothing of bindcar's.  RFCs: 1035 (messages,
names, compression), 2136 (UPDATE), 8945 (TSIG), 5936 (AXFR), 3597 (unknown types),
1996 (NOTIFY).
"""

import base64
import collections
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import selectors
import socket
import struct
import threading
import time

DEFAULT_TIMEOUT = 10.0
MAX_TRANSFER = 10_000_000           # records in one AXFR before it is refused
MAX_MESSAGE = 65535                 # bytes of one message, its TCP length prefix a u16
FUDGE = 300                         # seconds of clock difference TSIG allows (RFC 8945)
OWED_WAIT = 30.0                    # seconds an UPDATE's late answer is waited for
WINDOW = 128                        # datagrams in flight at once (the socket's buffer)

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "OPT": 41, "TSIG": 250, "AXFR": 252, "ANY": 255, "CAA": 257,
         # named as dig names them; their data in RFC 3597 form (no parser here)
         "HINFO": 13, "RP": 17, "AFSDB": 18, "LOC": 29, "NAPTR": 35, "KX": 36, "CERT": 37,
         "DNAME": 39, "DS": 43, "SSHFP": 44, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48,
         "NSEC3": 50, "NSEC3PARAM": 51, "TLSA": 52, "SMIMEA": 53, "CDS": 59, "CDNSKEY": 60,
         "OPENPGPKEY": 61, "CSYNC": 62, "ZONEMD": 63, "SVCB": 64, "HTTPS": 65, "SPF": 99,
         "URI": 256}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
IN, NONE, ANY = 1, 254, 255
OPCODE_QUERY, OPCODE_NOTIFY, OPCODE_UPDATE = 0, 4, 5
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
          5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
          10: "NOTZONE", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}
# TSIG algorithm names on the wire (RFC 8945 §6) and their hashes.
ALGORITHMS = {"hmac-md5": ("hmac-md5.sig-alg.reg.int.", hashlib.md5),
              "hmac-sha1": ("hmac-sha1.", hashlib.sha1),
              "hmac-sha224": ("hmac-sha224.", hashlib.sha224),
              "hmac-sha256": ("hmac-sha256.", hashlib.sha256),
              "hmac-sha384": ("hmac-sha384.", hashlib.sha384),
              "hmac-sha512": ("hmac-sha512.", hashlib.sha512)}
# Types whose RDATA names may be compressed (RFC 3597 §4: those of RFC 1035 only).
COMPRESSED_RDATA = {"NS", "CNAME", "SOA", "PTR", "MX"}

Record = collections.namedtuple("Record", "name ttl type value")
Record.__doc__ = ("One resource record: ``name`` absolute, lower case, with its final dot; "
                  "``type`` upper case; ``value`` presentation text as dig prints it.")


class DnsError(Exception):
    """Base class of every error this module raises about named's DNS channel."""


class DnsConnectionError(DnsError):
    """named could not be reached, or its answer was cut or malformed."""


class DnsUnanswered(DnsConnectionError):
    """named answered nothing within the timeout: it may still apply the UPDATE."""


class DnsTsigError(DnsError):
    """A signature problem: named refused bindcar's key, or its reply is not signed right.
    ``rcode`` is named's TSIG error (``"BADKEY"``, ``"BADSIG"``, ``"BADTIME"``), else None."""

    def __init__(self, message, rcode=None):
        super().__init__(message)
        self.rcode = rcode


class MessageTooLarge(ValueError):
    """What was asked would not fit in one DNS message (65,535 bytes)."""


class DnsUpdateError(DnsError):
    """named answered with an error rcode; ``rcode`` is its mnemonic (``"REFUSED"``...)."""

    def __init__(self, rcode, message):
        super().__init__(message)
        self.rcode = rcode


# ---------------------------------------------------------------- names (RFC 1035 §3.1, §4.1.4)

_TEXT_TOKEN = re.compile(r"\\(\d{3}|.)|(\.)|([^\\.]+)|(\\)$", re.S)


def _escaped(text, dots=False):
    """Presentation text -> bytes, ``\\X`` and ``\\DDD`` undone; with ``dots``, a list of
    the parts between unescaped dots (a name's labels)."""
    parts, current = [], bytearray()
    for match in _TEXT_TOKEN.finditer(text):
        escape, dot, plain, trailing = match.groups()
        if trailing is not None:
            raise ValueError(f"{text!r} ends in a lone backslash")
        if escape is not None:
            if escape.isdigit() and int(escape) > 255:
                raise ValueError(f"escape \\{escape} in {text!r} is not a byte")
            current += bytes([int(escape)]) if escape.isdigit() else escape.encode()
        elif dot is not None and dots:
            parts.append(bytes(current))
            current = bytearray()
        else:
            current += (dot or plain).encode()
    return parts + [bytes(current)] if dots else bytes(current)


def name_labels(name):
    """``"www.Example.com."`` -> [b"www", b"Example", b"com"]; ``"."`` or ``""`` -> []."""
    if name in (".", ""):
        return []
    labels = _escaped(name, dots=True)
    if labels[-1] == b"" and len(labels) > 1:           # the final, unescaped dot
        labels.pop()
    if any(not 0 < len(label) < 64 for label in labels) or \
            sum(len(label) + 1 for label in labels) + 1 > 255:
        raise ValueError(f"{name!r} is not a valid domain name")
    return labels


_PLAIN_LABEL = re.compile(rb"[A-Za-z0-9_*/+=-]+")


def label_text(label):
    """One label as dig prints it: ``.``, ``\\``, ``"``, ``;`` etc. escaped, others \\DDD."""
    if _PLAIN_LABEL.fullmatch(label):                  # the common case, at C speed
        return label.decode("ascii")
    out = []
    for byte in label:
        ch = chr(byte)
        if ch in '.\\"();$@':
            out.append("\\" + ch)
        elif 0x21 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def labels_text(labels, lower=True):
    text = ".".join(label_text(label) for label in labels) + "."
    return text.lower() if lower else text


def encode_name(name, offsets=None, at=0):
    """Wire form of ``name``; with ``offsets`` (suffix -> position of the names already in
    the message) and ``at`` (where this one goes), compressed against them,
    case-insensitively as BIND does, and recorded there for the names after it."""
    labels = name_labels(name) if isinstance(name, str) else name
    wire = bytearray()
    for i in range(len(labels)):
        suffix = b".".join(label.lower() for label in labels[i:])
        if offsets is not None and suffix in offsets:
            return bytes(wire) + struct.pack("!H", 0xC000 | offsets[suffix])
        if offsets is not None and at + len(wire) < 0x4000:
            offsets[suffix] = at + len(wire)
        wire += bytes([len(labels[i])]) + labels[i]
    return bytes(wire) + b"\0"


def decode_name(data, pos, limit=None):
    """(labels, position after the name) from ``data`` at ``pos``, not past ``limit``
    (a record's end); pointers followed, loops and pointers ahead refused."""
    labels, end, total = [], None, 1
    limit = len(data) if limit is None else limit
    while True:
        if pos >= limit:
            raise DnsConnectionError("a name runs past the end of its record or message")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= limit:
                raise DnsConnectionError("a compression pointer is cut short")
            target = struct.unpack_from("!H", data, pos)[0] & 0x3FFF
            if target >= pos:                       # only back to a prior name: no loop
                raise DnsConnectionError("a name's compression pointer loops or points ahead")
            end = pos + 2 if end is None else end
            pos = target
            continue
        if length & 0xC0:
            raise DnsConnectionError(f"unknown label type {length:#x} in a name")
        if length == 0:
            return labels, (pos + 1 if end is None else end)
        total += length + 1
        if total > 255 or pos + 1 + length > limit:
            raise DnsConnectionError("a name is longer than 255 bytes or runs past the end")
        labels.append(bytes(data[pos + 1:pos + 1 + length]))
        pos += 1 + length


# ---------------------------------------------------------------- RDATA (text <-> wire)

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


_QUOTED_RUN = re.compile(r'\s*(?:"(?:[^"\\]|\\.)*"\s*)+', re.S)


def _strings(text):
    """TXT presentation text -> character strings: ``"a" "b"`` is two; bare words each one."""
    if text.lstrip().startswith('"'):
        if not _QUOTED_RUN.fullmatch(text):
            raise ValueError(f"TXT text {text!r} is not a list of quoted strings")
        return [_escaped(p) for p in _QUOTED.findall(text)]
    return [_escaped(word) for word in text.split()]


def _quote(data):
    out = ['"']
    for byte in data:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out) + '"'


def rdata_to_wire(rtype, value, offsets=None, at=0):
    """Presentation text of one record's data -> its RDATA bytes.  Names in the
    RDATA of RFC 1035 types are compressed, as ``encode_name``, with ``at`` the
    RDATA's position in the message.  ValueError for text that is not such data."""
    try:
        return _rdata_to_wire(rtype, value, offsets, at)
    except (struct.error, IndexError, ValueError) as e:
        raise ValueError(f"{rtype} data {value!r} cannot be sent: {e}") from None


def _rdata_to_wire(rtype, value, offsets, at):
    if value.startswith("\\#"):                                  # RFC 3597
        _, length, *hexes = value.split()
        data = bytes.fromhex("".join(hexes))
        if len(data) != int(length):
            raise ValueError(f"{value!r}: length {length} but {len(data)} bytes")
        return data
    fields = value.split()
    offsets = offsets if rtype in COMPRESSED_RDATA else None
    if rtype == "A":
        return ipaddress.IPv4Address(value.strip()).packed
    if rtype == "AAAA":
        return ipaddress.IPv6Address(value.strip()).packed
    if rtype in ("NS", "CNAME", "PTR"):
        return encode_name(value.strip(), offsets, at)
    if rtype == "MX":
        return struct.pack("!H", int(fields[0])) + encode_name(fields[1], offsets, at + 2)
    if rtype == "SRV":
        return struct.pack("!HHH", *(int(f) for f in fields[:3])) + encode_name(fields[3])
    if rtype == "SOA":
        mname = encode_name(fields[0], offsets, at)
        rname = encode_name(fields[1], offsets, at + len(mname))
        return mname + rname + struct.pack("!IIIII", *(int(f) for f in fields[2:7]))
    if rtype == "TXT":
        strings = [s[i:i + 255] for s in _strings(value) for i in range(0, max(len(s), 1), 255)]
        return b"".join(bytes([len(s)]) + s for s in strings)
    if rtype == "CAA":
        flags, tag, rest = value.split(None, 2)
        quoted = _QUOTED.fullmatch(rest.strip())
        data = _escaped(quoted.group(1)) if quoted else rest.strip().encode()
        return bytes([int(flags), len(tag)]) + tag.encode() + data
    raise ValueError(f"type {rtype} needs RFC 3597 form: \\# length hex")


def rdata_to_text(rtype, data, start, length):
    """RDATA of ``length`` bytes at ``data[start]`` -> presentation text as dig prints it
    (names in it keep their case).  DnsConnectionError when its fields do not fill
    exactly those bytes: a hostile reply cannot make one record read another's."""
    try:
        text, used = _rdata_to_text(rtype, data, start, length)
    except (struct.error, IndexError) as e:
        raise DnsConnectionError(f"a {rtype} record's data is malformed ({e})") from None
    if used != length:
        raise DnsConnectionError(f"a {rtype} record's data is {length} bytes, its fields "
                                 f"{used}")
    return text


def _rdata_to_text(rtype, data, start, length):
    """(text, bytes its fields take), names read from the whole message (compression)."""
    rdata, end = data[start:start + length], start + length

    def name_at(pos):
        labels, after = decode_name(data, pos, end)
        return labels_text(labels, lower=False), after

    if rtype == "A" and length == 4:
        return socket.inet_ntoa(rdata), 4
    if rtype == "AAAA" and length == 16:
        return socket.inet_ntop(socket.AF_INET6, rdata), 16   # as dig: ::ffff:192.0.2.1
    if rtype in ("NS", "CNAME", "PTR"):
        name, after = name_at(start)
        return name, after - start
    if rtype in ("MX", "SRV"):
        numbers = struct.unpack_from("!H" if rtype == "MX" else "!HHH", rdata)
        name, after = name_at(start + 2 * len(numbers))
        return " ".join([*map(str, numbers), name]), after - start
    if rtype == "SOA":
        mname, pos = name_at(start)
        rname, pos = name_at(pos)
        if pos + 20 > end:
            raise IndexError("the SOA's numbers run past the record's end")
        numbers = struct.unpack_from("!IIIII", data, pos)
        return " ".join([mname, rname, *map(str, numbers)]), pos + 20 - start
    if rtype == "TXT" and length:
        strings, pos = [], 0
        while pos < length:
            size = rdata[pos]
            if pos + 1 + size > length:
                raise IndexError("a string runs past the record's end")
            strings.append(_quote(rdata[pos + 1:pos + 1 + size]))
            pos += 1 + size
        return " ".join(strings), pos
    if rtype == "CAA" and length >= 2 and 2 + rdata[1] <= length:
        tag = rdata[2:2 + rdata[1]]
        if _PLAIN_LABEL.fullmatch(tag) and tag.isalnum():
            return f"{rdata[0]} {tag.decode()} {_quote(rdata[2 + len(tag):])}", length
    return (f"\\# {length} {rdata.hex().upper()}" if length else "\\# 0"), length


# ---------------------------------------------------------------- DNSSEC keys (RFC 4034)

DS_DIGESTS = {2: "sha256", 4: "sha384"}         # digest type -> hashlib name (RFC 4509, 6605)


def generic_rdata(value):
    """RDATA in RFC 3597 form (``\\# 4 0A000001``, as ``rdata_to_text`` shows a type it
    does not spell out, DNSKEY among them) -> its bytes."""
    _, length, *hexes = value.split()
    data = bytes.fromhex("".join(hexes))
    if len(data) != int(length):
        raise ValueError(f"{value!r}: length {length} but {len(data)} bytes")
    return data


def key_tag(rdata):
    """The key tag of a DNSKEY's RDATA (RFC 4034 Appendix B; not for algorithm 1)."""
    total = sum(byte << 8 if i % 2 == 0 else byte for i, byte in enumerate(rdata))
    return (total + (total >> 16)) & 0xFFFF


def ds_record(owner, rdata, digest_type):
    """The DS record of a DNSKEY for the parent zone, as text: ``tag alg type DIGEST``;
    the digest over the owner's name in canonical (lower-case) wire form and the
    DNSKEY's RDATA (RFC 4034 §5.1.4)."""
    digest = hashlib.new(DS_DIGESTS[digest_type], encode_name(owner.lower()) + rdata)
    return f"{key_tag(rdata)} {rdata[3]} {digest_type} {digest.hexdigest().upper()}"


# ---------------------------------------------------------------- messages (RFC 1035 §4)

RR = collections.namedtuple("RR", "labels type rclass ttl rdata_start rdata_length start")
HEADER = struct.Struct("!HHHHHH")       # id, flags, qdcount, ancount, nscount, arcount


class Message:
    """A decoded message: header fields, the four sections, and ``wire`` itself."""

    def __init__(self, wire):
        if len(wire) < HEADER.size:
            raise DnsConnectionError("a reply shorter than a DNS header")
        self.wire = wire
        self.id, self.flags, qd, an, ns, ar = HEADER.unpack_from(wire)
        self.opcode = (self.flags >> 11) & 0xF
        self.rcode = self.flags & 0xF
        pos = HEADER.size
        self.question = []
        for _ in range(qd):
            labels, pos = decode_name(wire, pos)
            if pos + 4 > len(wire):
                raise DnsConnectionError("a question runs past the end of the message")
            self.question.append((labels, *struct.unpack_from("!HH", wire, pos)))
            pos += 4
        self.answer, pos = self._records(an, pos)
        self.authority, pos = self._records(ns, pos)
        self.additional, pos = self._records(ar, pos)
        if pos != len(wire):
            raise DnsConnectionError("a message carries bytes after its last record")

    def _records(self, count, pos):
        records = []
        for _ in range(count):
            start = pos
            labels, pos = decode_name(self.wire, pos)
            if pos + 10 > len(self.wire):
                raise DnsConnectionError("a record runs past the end of the message")
            rtype, rclass, ttl, length = struct.unpack_from("!HHIH", self.wire, pos)
            pos += 10
            if pos + length > len(self.wire):
                raise DnsConnectionError("a record's data runs past the end of the message")
            records.append(RR(labels, rtype, rclass, ttl, pos, length, start))
            pos += length
        return records, pos

    def record(self, rr):
        """An RR of this message as a Record (name lower-cased, value as dig prints it)."""
        rtype = TYPE_NAMES.get(rr.type, f"TYPE{rr.type}")
        value = rdata_to_text(rtype, self.wire, rr.rdata_start, rr.rdata_length)
        return Record(labels_text(rr.labels), rr.ttl, rtype, value)

    def tsig(self):
        """The TSIG RR when it is the last additional record (RFC 8945 §5.1), else None."""
        if self.additional and self.additional[-1].type == TYPES["TSIG"]:
            return self.additional[-1]
        return None


def decode_message(wire):
    """``wire`` (without a TCP length prefix) -> Message; DnsConnectionError if malformed."""
    return Message(bytes(wire))


class Builder:
    """A message being written, with name compression across its records."""

    def __init__(self, msg_id, flags):
        self.wire = bytearray(HEADER.pack(msg_id, flags, 0, 0, 0, 0))
        self.offsets, self.counts = {}, [0, 0, 0, 0]
        self.first_question = None              # (name as labels_text, type), to match

    def question(self, name, rtype, rclass=IN):
        if self.first_question is None:
            self.first_question = (labels_text(name_labels(name)), rtype)
        self.wire += encode_name(name, self.offsets, len(self.wire)) + \
            struct.pack("!HH", rtype, rclass)
        self.counts[0] += 1

    def record(self, section, name, rtype, rclass, ttl, value=None):
        """Append an RR to section 1 (answer/prerequisite), 2 (authority/update) or 3."""
        if not isinstance(rtype, str):
            rtype = TYPE_NAMES.get(rtype, f"TYPE{rtype}")
        self.wire += encode_name(name, self.offsets, len(self.wire))
        head = len(self.wire)
        self.wire += struct.pack("!HHIH", _type_code(rtype), rclass, ttl, 0)
        rdata = b"" if value is None else rdata_to_wire(rtype, value, self.offsets,
                                                         len(self.wire))
        struct.pack_into("!H", self.wire, head + 8, len(rdata))
        self.wire += rdata
        self.counts[section] += 1

    def bytes(self):
        struct.pack_into("!HHHH", self.wire, 4, *self.counts)
        return bytes(self.wire)


# ---------------------------------------------------------------- TSIG (RFC 8945)

@functools.lru_cache(maxsize=64)           # a key's and an algorithm's names, signed each time
def _canonical(name):
    return encode_name([label.lower() for label in name_labels(name)])


def tsig_variables(key_name, algorithm, time_signed, fudge, error=0, other=b""):
    """The TSIG variables a MAC covers after the message (RFC 8945 §4.3.3)."""
    return (_canonical(key_name) + struct.pack("!HI", ANY, 0) + _canonical(ALGORITHMS[algorithm][0])
            + struct.pack("!HIHHH", time_signed >> 32, time_signed & 0xFFFFFFFF, fudge, error,
                          len(other)) + other)


def tsig_mac(secret, algorithm, message, variables, prior_mac=None):
    """HMAC over [prior MAC] + message + variables, as RFC 8945 §4.3 orders them."""
    mac = hmac.new(secret, digestmod=ALGORITHMS[algorithm][1])
    if prior_mac is not None:
        mac.update(struct.pack("!H", len(prior_mac)) + prior_mac)
    mac.update(message)
    mac.update(variables)
    return mac.digest()


def sign(wire, key_name, algorithm, secret, now=None, prior_mac=None):
    """``wire`` with its TSIG record appended; returns (signed wire, MAC)."""
    time_signed = int(time.time() if now is None else now)
    variables = tsig_variables(key_name, algorithm, time_signed, FUDGE)
    mac = tsig_mac(secret, algorithm, wire, variables, prior_mac)
    msg_id = struct.unpack_from("!H", wire)[0]
    rdata = (_canonical(ALGORITHMS[algorithm][0])
             + struct.pack("!HIHH", time_signed >> 32, time_signed & 0xFFFFFFFF, FUDGE, len(mac))
             + mac + struct.pack("!HHH", msg_id, 0, 0))
    signed = bytearray(wire)
    struct.pack_into("!H", signed, 10, struct.unpack_from("!H", wire, 10)[0] + 1)
    signed += _canonical(key_name) + struct.pack("!HHIH", TYPES["TSIG"], ANY, 0, len(rdata))
    return bytes(signed + rdata), mac


def parse_tsig(message, rr):
    """The fields of a TSIG RR: algorithm, time, fudge, mac, original id, error, other.
    DnsTsigError unless it is class ANY, TTL 0 and its fields fill its data exactly."""
    wire, pos, end = message.wire, rr.rdata_start, rr.rdata_start + rr.rdata_length
    try:
        algorithm, pos = decode_name(wire, pos, end)
        high, low, fudge, size = struct.unpack_from("!HIHH", wire, pos)
        pos += 10
        mac = wire[pos:pos + size]
        original_id, error, other_len = struct.unpack_from("!HHH", wire, pos + size)
    except (struct.error, DnsConnectionError):
        raise DnsTsigError("named's reply carries a malformed TSIG record: refused") from None
    other = wire[pos + size + 6:pos + size + 6 + other_len]
    if rr.rclass != ANY or rr.ttl != 0 or pos + size + 6 + other_len != end:
        raise DnsTsigError("named's reply carries a malformed TSIG record: refused")
    return {"algorithm": labels_text(algorithm), "time": (high << 32) | low, "fudge": fudge,
            "mac": mac, "original_id": original_id, "error": error, "other": other}


def verify(message, key_name, algorithm, secret, prior_mac, now=None, timers_only=False):
    """Check the TSIG of a reply; return its MAC.  DnsTsigError says what is wrong.

    ``prior_mac`` is the request's MAC (a reply) or the previous message's (the
    next message of an AXFR, which with ``timers_only`` covers only the timers,
    RFC 8945 §5.3.1).  ``now=False`` skips the clock check (old captures).
    """
    rr = message.tsig()
    if rr is None:
        raise DnsTsigError(f"named's reply is not signed, though the request was signed with "
                           f"key {key_name!r}: is the key in named's configuration?")
    fields = parse_tsig(message, rr)
    if labels_text(rr.labels) != labels_text(name_labels(key_name)):
        raise DnsTsigError(f"named signed its reply with key {labels_text(rr.labels)!r}, "
                           f"not {key_name!r}")
    if fields["algorithm"] != ALGORITHMS[algorithm][0]:
        raise DnsTsigError(f"named signed its reply with {fields['algorithm']!r}, "
                           f"not {algorithm}")
    if fields["error"] == 16:        # BADSIG and BADKEY come unsigned: nothing to verify
        raise DnsTsigError(f"named refused the signature of key {key_name!r} (BADSIG): the "
                           "secret bindcar has is not the one named has for this key", "BADSIG")
    if fields["error"] == 17:
        raise DnsTsigError(f"named does not know key {key_name!r} (BADKEY): add it to "
                           "named's configuration, or set the key bindcar uses", "BADKEY")
    digest_size = ALGORITHMS[algorithm][1]().digest_size
    if len(fields["mac"]) != digest_size:
        raise DnsTsigError(f"named's reply carries a MAC of {len(fields['mac'])} bytes, not "
                           f"{digest_size}: refused")
    unsigned = bytearray(message.wire[:rr.start])
    struct.pack_into("!H", unsigned, 0, fields["original_id"])
    struct.pack_into("!H", unsigned, 10, len(message.additional) - 1)
    if timers_only:
        variables = struct.pack("!HIH", fields["time"] >> 32, fields["time"] & 0xFFFFFFFF,
                                fields["fudge"])
    else:
        variables = tsig_variables(key_name, algorithm, fields["time"], fields["fudge"],
                                   fields["error"], fields["other"])
    expected = tsig_mac(secret, algorithm, bytes(unsigned), variables, prior_mac)
    if not hmac.compare_digest(expected, fields["mac"]):
        raise DnsTsigError(f"named's reply does not verify with key {key_name!r}: refused")
    if fields["error"] == 18:        # BADTIME is signed: reported once verified
        server = int.from_bytes(fields["other"][:6], "big") if len(fields["other"]) >= 6 else None
        skew = f"; named's clock is {server - fields['time']:+d} s from bindcar's" \
            if server else ""
        raise DnsTsigError(f"named refused the request's time (BADTIME){skew}: set both "
                           "clocks right (NTP)", "BADTIME")
    if fields["error"]:
        rcode = RCODES.get(fields["error"], str(fields["error"]))
        raise DnsTsigError(f"named's reply carries TSIG error {rcode}: refused", rcode)
    if now is not False:
        clock = time.time() if now is None else now
        if abs(clock - fields["time"]) > fields["fudge"]:
            raise DnsTsigError(f"named's reply was signed {int(fields['time'] - clock):+d} s "
                               "from bindcar's clock, past the fudge: set both clocks right")
    return fields["mac"]


# ---------------------------------------------------------------- the client

def normalize_algorithm(name):
    """``"sha256"``, ``"HMAC-SHA256"`` -> ``"hmac-sha256"``; ValueError if unknown."""
    algorithm = name.strip().lower().removesuffix(".sig-alg.reg.int")
    algorithm = algorithm if algorithm.startswith("hmac-") else "hmac-" + algorithm
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown TSIG algorithm {name!r}; use one of "
                         + ", ".join(ALGORITHMS))
    return algorithm


def _type(rtype, allowed=None):
    """A record type's name, upper case: a known one or ``TYPEnnn`` (RFC 3597)."""
    rtype = rtype.upper()
    if rtype not in TYPES and not re.fullmatch(r"TYPE\d{1,5}", rtype) or \
            rtype.startswith("TYPE") and int(rtype[4:]) > 65535 or \
            allowed is not None and rtype not in allowed:
        raise ValueError(f"record type {rtype!r} cannot be used here")
    return rtype


def _type_code(rtype):
    return TYPES[rtype] if rtype in TYPES else int(rtype[4:])


NOT_QUERIED = ("AXFR", "OPT", "TSIG")       # not answered as plain records: refused


def _absolute(name):
    return name if name.endswith(".") else name + "."


class DnsClient:
    """UPDATE, queries and AXFR to one named over one kept-open TCP connection.

    Thread-safe, one exchange at a time.  With a key, every request is signed
    and every reply must verify (each message of an AXFR too).  An UPDATE is
    sent again on a new connection only when it cannot have reached named (the
    connection was found closed before sending); otherwise the failure is raised.

    An UPDATE named has not answered within the timeout is *owed*: a named that
    is stopped or busy still holds it and will apply it when it goes on.  The
    connection is kept, and the next exchange first reads that late answer, so
    nothing sent afterwards reaches named before it (say, the undo of that very
    UPDATE on another connection).  Past OWED_WAIT the connection is given up.
    """

    def __init__(self, host, port=53, key_name=None, algorithm="hmac-sha256", secret=None,
                 timeout=DEFAULT_TIMEOUT):
        self.host, self.port, self.timeout = host, int(port), timeout
        self.key_name = key_name
        self.algorithm = normalize_algorithm(algorithm)
        self._secret = None
        if secret and key_name is None:
            raise ValueError("a TSIG secret needs its key name")
        if key_name is not None:
            name_labels(key_name)
            try:
                self._secret = base64.b64decode(secret or "", validate=True)
            except ValueError:
                raise ValueError("the TSIG secret is not valid base64") from None
            if not self._secret:
                raise ValueError("the TSIG secret is empty")
        self._lock = threading.Lock()
        self._sock = None
        self._owed = None               # (request, question, mac, what, give up at)

    def __repr__(self):
        return f"DnsClient({self.host!r}, {self.port}, {self.key_name!r})"

    # -- the three operations

    def update(self, zone, add=(), delete=(), require=(), forbid=(), then_delete=()):
        """One UPDATE of ``zone`` (RFC 2136): all of it applies, or none.

        ``add``: Records.  ``delete``: (name, type, value) — value None deletes
        the RRset, type "ANY" every RRset of the name.  ``require``: (name, type,
        value) — value None: the RRset exists.  ``forbid``: (name, type) — type
        None: the name has no data.  named applies the changes in order:
        ``delete``, ``add``, then ``then_delete``, deletions after the additions
        (a value replaced in a record set named never lets go empty, the apex
        NS).  None on NOERROR, else DnsUpdateError.
        """
        msg = Builder(secrets.randbits(16), OPCODE_UPDATE << 11)
        msg.question(_absolute(zone), TYPES["SOA"])
        for name, rtype, value in require:                      # prerequisites (§2.4)
            msg.record(1, _absolute(name), _type(rtype), ANY if value is None else IN, 0, value)
        for name, rtype in forbid:
            msg.record(1, _absolute(name), "ANY" if rtype is None else _type(rtype), NONE, 0)
        for name, rtype, value in delete:                       # updates (§2.5)
            self._deletion(msg, name, rtype, value)
        for record in add:
            msg.record(2, _absolute(record.name), _type(record.type), IN, record.ttl,
                       record.value)
        for name, rtype, value in then_delete:
            self._deletion(msg, name, rtype, value)
        reply = self._exchange(msg, f"UPDATE of {zone}", resend=False)[0]
        if reply.rcode:
            rcode = RCODES.get(reply.rcode, str(reply.rcode))
            raise DnsUpdateError(rcode, _update_refusal(rcode, zone))

    @staticmethod
    def _deletion(msg, name, rtype, value):
        rtype = _type(rtype)
        if value is None:
            msg.record(2, _absolute(name), rtype, ANY, 0)
        else:
            msg.record(2, _absolute(name), rtype, NONE, 0, value)

    def query(self, name, rtype):
        """The answer section for ``name``/``rtype`` as Records; [] for NXDOMAIN or no data."""
        rtype = _type(rtype)
        if rtype in NOT_QUERIED:
            raise ValueError(f"{rtype} is not a type to query (use axfr for a transfer)")
        msg = Builder(secrets.randbits(16), 0)
        msg.question(_absolute(name), _type_code(rtype))
        reply = self._exchange(msg, f"query for {name} {rtype}")[0]
        if reply.rcode not in (0, 3):
            rcode = RCODES.get(reply.rcode, str(reply.rcode))
            raise DnsUpdateError(rcode, f"named answered {rcode} to the query for {name} {rtype}")
        return [reply.record(rr) for rr in reply.answer]

    def axfr(self, zone):
        """Every record of ``zone`` by AXFR (RFC 5936), the closing SOA not repeated."""
        msg = Builder(secrets.randbits(16), 0)
        msg.question(_absolute(zone), TYPES["AXFR"])
        replies = self._exchange(msg, f"AXFR of {zone}", transfer=True)
        if replies[0].rcode:
            rcode = RCODES.get(replies[0].rcode, str(replies[0].rcode))
            raise DnsUpdateError(rcode, f"named refused the AXFR of {zone} ({rcode}): "
                                 "does its allow-transfer name this key?")
        records = [reply.record(rr) for reply in replies for rr in reply.answer]
        return records[:-1]                     # _read_replies checked it is the closing SOA

    def close(self):
        """Close the connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    def settle(self):
        """Wait (within the timeout) for the answer to an owed UPDATE, if there is one:
        afterwards, what a transfer on another connection shows includes it.
        DnsUnanswered while named is still silent."""
        with self._lock:
            self._read_owed()

    # -- one exchange: sign, send, read, verify

    def _exchange(self, msg, what, transfer=False, resend=True):
        """Send ``msg`` (signed when there is a key) and read its verified replies.

        A request that fails on a kept-open connection (named closed it between
        our check and the send) is sent once more on a new one; an UPDATE
        (``resend=False``) only when its send failed: once sent, named may have
        applied it.  Each reply (each message of a transfer) must arrive whole
        within ``timeout``, however slowly it trickles in.
        """
        wire, question = msg.bytes(), msg.first_question
        with self._lock:                        # signed here: its time is when it goes
            mac = None
            if self._secret is not None:
                wire, mac = sign(wire, self.key_name, self.algorithm, self._secret)
            if len(wire) > MAX_MESSAGE:
                raise MessageTooLarge(f"the {what} would be {len(wire)} bytes; one DNS message "
                                 f"carries at most {MAX_MESSAGE}")
            frame = struct.pack("!H", len(wire)) + wire
            self._read_owed()
            for attempt in (1, 2):
                fresh, sent = self._ensure_connection(), False
                try:
                    try:
                        self._sock.sendall(frame)
                    except OSError as e:        # the connection was dead: named has nothing
                        raise DnsConnectionError(f"named at {self.host}:{self.port} closed the "
                                                 f"connection before the {what}: {e}") from None
                    sent = True
                    return self._read_replies(wire, question, mac, what, transfer)
                except DnsConnectionError as e:
                    if isinstance(e, DnsUnanswered) and not resend:
                        self._owed = (wire, question, mac, what, time.monotonic() + OWED_WAIT)
                        raise
                    self._drop()
                    if fresh or attempt == 2 or (sent and not resend):
                        raise
                except BaseException:
                    self._drop()
                    raise

    def _read_replies(self, request, question, mac, what, transfer):
        """The reply (for a transfer, every message to the closing SOA), verified: a
        response (QR) to this request's ID, opcode and question."""
        msg_id, flags = struct.unpack_from("!HH", request)
        replies, records, first = [], 0, None
        while True:
            reply = decode_message(self._read_frame(what, first=not replies))
            asked = [(labels_text(q[0]), q[1]) for q in reply.question]
            if reply.id != msg_id or not reply.flags & 0x8000 or \
                    reply.opcode != (flags >> 11) & 0xF or asked not in ([], [question]):
                raise DnsConnectionError(f"named's reply to the {what} does not match it "
                                         "(not a response, or another message's ID or question)")
            if self._secret is not None:
                mac = verify(reply, self.key_name, self.algorithm, self._secret, mac,
                             timers_only=bool(replies))
            elif reply.tsig() is not None and RCODES.get(reply.rcode) == "NOTAUTH":
                raise DnsTsigError(f"named wants the {what} signed: set a TSIG key")
            replies.append(reply)
            if not transfer or reply.rcode:
                return replies
            # RFC 5936 §2.2: the zone's SOA first, and it again, last, closes the transfer.
            for i, rr in enumerate(reply.answer):
                soa = rr.type == TYPES["SOA"] and reply.wire[rr.rdata_start:
                                                              rr.rdata_start + rr.rdata_length]
                if first is None:
                    if not soa:
                        raise DnsConnectionError(f"the {what} does not start with the SOA")
                    first = soa
                elif soa:
                    if i != len(reply.answer) - 1:
                        raise DnsConnectionError(f"the {what} goes on after its closing SOA")
                    return replies
            records += len(reply.answer)
            if records > MAX_TRANSFER:
                raise DnsConnectionError(f"the {what} holds more than {MAX_TRANSFER} records")

    def _read_owed(self):
        """The late answer to the owed UPDATE; DnsUnanswered while named is silent (until
        OWED_WAIT has passed: then the connection is given up, its outcome unknown)."""
        if self._owed is None:
            return
        wire, question, mac, what, give_up = self._owed
        try:
            self._read_replies(wire, question, mac, what, False)
        except DnsUnanswered:
            if time.monotonic() < give_up:
                raise DnsUnanswered(f"named has still not answered the {what} sent before; "
                                    "nothing more is sent until it does") from None
            self._drop()
        except DnsError:
            self._drop()                        # closed: it applies nothing more it was sent
        self._owed = None

    def _read_frame(self, what, first=False):
        deadline = time.monotonic() + self.timeout
        (length,) = struct.unpack("!H", self._recv(2, what, deadline, first))
        if length < HEADER.size:
            raise DnsConnectionError(f"named's reply to the {what} is {length} bytes long")
        return self._recv(length, what, deadline)

    def _recv(self, size, what, deadline, first=False):
        """Exactly ``size`` bytes (at most 65,535: a lying prefix allocates no more) by
        ``deadline``; DnsUnanswered when it passes with not a byte of the ``first``
        message read."""
        buf = bytearray()
        while len(buf) < size:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise socket.timeout
                self._sock.settimeout(left)
                chunk = self._sock.recv(size - len(buf))
            except socket.timeout:
                error = DnsUnanswered if first and not buf else DnsConnectionError
                raise error(f"named did not answer the {what} within "
                            f"{self.timeout:g} s") from None
            except OSError as e:
                raise DnsConnectionError(f"named at {self.host}:{self.port} dropped the "
                                         f"connection during the {what}: {e}") from None
            if not chunk:
                raise DnsConnectionError(f"named at {self.host}:{self.port} closed the "
                                         f"connection during the {what}")
            buf += chunk
        return bytes(buf)

    # -- connection life cycle

    def _ensure_connection(self):
        """An open connection; True when it is new.  One named closed, or with bytes no
        request asked for (a reply left over), is replaced."""
        if self._sock is not None and not self._idle():
            self._drop()
        if self._sock is not None:
            return False
        try:
            # An ASCII host as bytes: for a str, getaddrinfo loads the idna codec (and
            # unicodedata, 0.3 MB) only to pass "127.0.0.1" through.
            host = self.host.encode() if self.host.isascii() else self.host
            self._sock = socket.create_connection((host, self.port), self.timeout)
        except OSError as e:
            raise DnsConnectionError(
                f"cannot connect to named at {self.host}:{self.port} for DNS: "
                f"{e.strerror or e}; is named listening there over TCP?") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True

    def _idle(self):
        """Open, and nothing waiting on it.  A non-blocking peek: select() cannot take
        descriptors past 1023, and with a timeout set CPython would wait it out first."""
        self._sock.setblocking(False)
        try:
            self._sock.recv(1, socket.MSG_PEEK)
            return False                        # closed (b""), or stale bytes
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self._sock.settimeout(self.timeout)

    def _drop(self):
        self._owed = None
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _update_refusal(rcode, zone):
    """What named's rcode to an UPDATE means, in words an operator can act on."""
    return {
        "REFUSED": f"named refused the UPDATE of {zone} (REFUSED): the zone does not allow "
                   "updates by this key, or it is frozen",
        "NOTAUTH": f"named is not authoritative for {zone} (NOTAUTH): the zone is not served, "
                   "or not as a primary",
        "NOTZONE": f"a name in the UPDATE is outside {zone} (NOTZONE)",
        "NXRRSET": f"a required record set does not exist in {zone} (NXRRSET): nothing changed",
        "YXRRSET": f"a record set that must not exist does in {zone} (YXRRSET): nothing changed",
        "NXDOMAIN": f"a name required to exist does not in {zone} (NXDOMAIN): nothing changed",
        "YXDOMAIN": f"a name required to have no data has some in {zone} (YXDOMAIN): "
                    "nothing changed",
        "SERVFAIL": f"named failed to apply the UPDATE of {zone} (SERVFAIL): see named's log",
    }.get(rcode, f"named answered {rcode} to the UPDATE of {zone}")


# ---------------------------------------------------------------- datagrams: NOTIFY and SOA

def notify(zone):
    """A NOTIFY of ``zone`` (RFC 1996 §3.7): opcode NOTIFY, AA set, the question
    ``zone SOA``; the secondary then asks its primaries for the zone's serial."""
    msg = Builder(0, OPCODE_NOTIFY << 11 | 0x0400)
    msg.question(_absolute(zone), TYPES["SOA"])
    return msg


def soa_query(zone):
    """A query for ``zone``'s SOA, recursion not desired: what a server serves itself."""
    msg = Builder(0, 0)
    msg.question(_absolute(zone), TYPES["SOA"])
    return msg


def soa_serial(reply, zone):
    """The serial of ``zone``'s SOA in a reply's answer, or None (a malformed SOA too:
    a reply from a secondary is input like any other)."""
    wanted = labels_text(name_labels(_absolute(zone)))
    for rr in reply.answer:
        if rr.type == TYPES["SOA"] and labels_text(rr.labels) == wanted:
            try:
                return int(reply.record(rr).value.split()[2])
            except (DnsError, IndexError, ValueError):
                return None
    return None


def ask_many(requests, timeout=2.0, key=None, window=WINDOW):
    """Send each request, ``(host, port, Builder)``, as one UDP datagram and gather the
    replies, at most ``window`` waiting at once: a list in the requests' order of each
    reply (a Message; its ``rcode`` may say no) or the DnsError that stands for it
    (DnsUnanswered when none came within ``timeout``).  With ``key``, ``(name,
    algorithm, secret bytes)``, each request is signed and a signed reply must verify;
    a request ``(host, port, Builder, key)`` has a key (or None) of its own.
    A reply must come from the address and port asked, with the request's ID, opcode
    and question: anything else is dropped unread."""
    results, waiting = [None] * len(requests), {}
    queue = list(enumerate(requests))[::-1]
    next_id = secrets.randbits(16)
    sockets, selector = {}, selectors.DefaultSelector()
    try:
        while queue or waiting:
            while queue and len(waiting) < window:
                i, (host, port, msg, *own) = queue.pop()
                next_id = (next_id + 1) & 0xFFFF
                while any(token[0] == next_id for token in waiting):    # still in flight
                    next_id = (next_id + 1) & 0xFFFF
                results[i] = _send_datagram(sockets, selector, host, port, msg, next_id,
                                            own[0] if own else key, waiting, i, timeout)
            if not waiting:
                continue
            now = time.monotonic()
            for token, (i, *_, deadline) in list(waiting.items()):
                if deadline <= now:
                    del waiting[token]
                    results[i] = DnsUnanswered(f"{token[1]} port {token[2]} did not answer "
                                               f"within {timeout:g} s")
            wait = min((entry[-1] for entry in waiting.values()), default=now) - now
            for selected, _ in selector.select(max(wait, 0)):
                _read_datagrams(selected.fileobj, waiting, results)
    finally:
        selector.close()
        for sock in sockets.values():
            sock.close()
    return results


def _send_datagram(sockets, selector, host, port, msg, msg_id, key, waiting, i, timeout):
    """Send one request; None once it waits for its reply, else the DnsError."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return DnsConnectionError(f"{host!r} is not an IP address")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    wire = bytearray(msg.bytes())
    struct.pack_into("!H", wire, 0, msg_id)
    wire, mac = bytes(wire), None
    if key is not None:
        wire, mac = sign(wire, *key)
    if family not in sockets:
        sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
        sockets[family].setblocking(False)
        selector.register(sockets[family], selectors.EVENT_READ)
    try:
        sockets[family].sendto(wire, (str(address), port))
    except OSError as e:
        return DnsConnectionError(f"cannot send to {address} port {port}: {e.strerror or e}")
    waiting[(msg_id, str(address), port)] = (i, wire, msg.first_question, key, mac,
                                            time.monotonic() + timeout)
    return None


def _read_datagrams(sock, waiting, results):
    """Every datagram waiting on ``sock``: the replies of ``waiting`` requests."""
    while True:
        try:
            data, source = sock.recvfrom(MAX_MESSAGE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:                 # an ICMP error of an earlier send: its request
            continue                    # times out, as a lost datagram does
        if len(data) < HEADER.size:
            continue
        token = (struct.unpack_from("!H", data)[0], str(ipaddress.ip_address(
            source[0].split("%")[0])), source[1])
        if token not in waiting:
            continue
        i, request, question, key, mac, _ = waiting[token]
        try:
            reply = decode_message(data)
        except DnsError:
            continue
        asked = [(labels_text(q[0]), q[1]) for q in reply.question]
        if not reply.flags & 0x8000 or asked not in ([], [question]) or \
                reply.opcode != (struct.unpack_from("!H", request, 2)[0] >> 11) & 0xF:
            continue
        del waiting[token]
        results[i] = reply
        if key is not None:             # a signed request's reply must verify
            try:
                verify(reply, key[0], key[1], key[2], mac)
            except DnsTsigError as e:
                results[i] = e

