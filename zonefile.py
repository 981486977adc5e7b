"""zonefile: the zone model, its validation, and everything bindcar writes.

Every piece of text that reaches a zone file or a named configuration
clause is made here, from values that were parsed and re-rendered, never
copied through.  A name can hold only ``[a-z0-9_-]`` labels (and a leftmost
``*``), an address only what ``ipaddress`` gives back, a text only quoted
and escaped characters: no input can start a directive (``$INCLUDE``), a
second record, a comment, or leave a quoted string or a ``{ }`` block.

    >>> zone = parse_zone({"zoneName": "Example.COM.", "zoneType": "primary",
    ...     "zoneConfig": {"ttl": 3600, "nameServers": ["ns1.example.net."],
    ...         "soa": {"primaryNs": "ns1.example.net.", "adminEmail": "admin@example.com",
    ...                 "serial": 1}}})
    >>> zone.name
    'example.com'
    >>> print(render_zone_clause(zone, "/var/cache/bind/example.com.zone"))
    { type primary; file "/var/cache/bind/example.com.zone"; };

Imports nothing of bindcar's, so it can be read, tested and reused alone.
"""

import collections
import contextlib
import datetime
import hashlib
import ipaddress
import os
import re
import stat

MAX_NAME = 253                   # presentation length without the final dot (255 on the wire)
MAX_LABEL = 63
MAX_TTL = 2147483647             # RFC 2181 §8
MAX_U16 = 65535
MAX_U32 = 4294967295
MAX_TXT_RDATA = 65535            # the RDATA of one TXT record, length bytes included
MAX_LIST = 256                   # entries in one address list
MAX_RECORDS = 100_000
MAX_CLAUSE = 30000               # the addzone command must fit named's 32768-byte frame
MAX_POLICY = 64
MAX_KEY_NAME = 253
ZONE_SUFFIX = ".zone"
MAX_FILE_NAME = 255 - len(".signed.jnl")      # named adds that to the longest of its files
MARKER = "; bindcar zone "        # the first line of every zone file bindcar writes
TEMP_PREFIX = ".bindcar-"
TEMP_SUFFIX = ".tmp"
DELETING_PREFIX = ".bindcar-deleting-"  # the note of a delete begun, named by a hash

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "PTR", "SRV", "CAA")
ZONE_TYPES = {"primary": "primary", "master": "primary",
              "secondary": "secondary", "slave": "secondary"}
ACL_KEYWORDS = ("any", "none", "localhost", "localnets")
SOA_DEFAULTS = {"refresh": 3600, "retry": 600, "expire": 604800, "negativeTtl": 86400}

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_CLASSLESS = re.compile(r"[0-9]{1,3}(?:-[0-9]{1,3})?/[0-9]{1,3}\Z")   # RFC 2317: 0/26
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_KEY_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?\Z")
_POLICY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_CAA_TAG = re.compile(r"[A-Za-z0-9]{1,15}\Z")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUOTED_LIST = re.compile(r'\s*(?:"(?:[^"\\]|\\.)*"\s*)+')
_DIGITS = re.compile(r"[0-9]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")          # Unicode category Cc, exactly


class ZoneError(ValueError):
    """An input field is invalid.  ``field`` is its JSON path, e.g. ``zoneConfig.ttl``."""

    def __init__(self, field, message):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


# ---------------------------------------------------------------- the model
# Immutable records (named tuples: ``_replace`` makes a changed copy).  Each field's
# comment says what it holds; every string in a Zone is safe to render as it is.

Soa = collections.namedtuple("Soa", (
    "primary_ns",               # absolute, with the final dot
    "admin_email",              # SOA mailbox form, absolute
    "serial", "refresh", "retry", "expire", "negative_ttl"))

Record = collections.namedtuple("Record", (
    "owner",                    # absolute, with the final dot
    "type",
    "ttl",                      # int, or None for the zone's $TTL
    "rdata"))                   # rendered from parsed fields

Zone = collections.namedtuple("Zone", (
    "name",                     # lower case, no final dot
    "type",                     # "primary" or "secondary"
    "ttl",                      # int or None
    "soa",                      # Soa or None
    "name_servers",             # absolute names
    "glue",                     # Record, A/AAAA for in-zone name servers
    "records",                  # Record
    "also_notify",              # rendered remote-server entries, or None
    "allow_transfer",           # rendered address-match entries, or None
    "allow_update",
    "primaries",
    "dnssec_policy",            # str or None
    "inline_signing",           # bool or None
    "update_key",               # str or None
    "notify_delay"),            # seconds; bindcar sets it for its catalog only
    defaults=(None, None, (), (), (), None, None, None, None, None, None, None, None))

ZoneUpdate = collections.namedtuple(   # a PATCH: None for a list not given, () cleared
    "ZoneUpdate", ("also_notify", "allow_transfer", "allow_update"),
    defaults=(None, None, None))


# ---------------------------------------------------------------- JSON shapes

def _at(field, key):
    return f"{field}.{key}" if field else key


def _absent(value):
    """``null``, ``[]`` and ``{}``: what Rust clients send for a field they leave unset."""
    return value is None or (isinstance(value, (list, dict)) and not value)


def _object(value, field, allowed, required=(), empty_is_absent=False, keep_empty=()):
    """A JSON object's fields that carry a value: only ``allowed`` keys, every ``required``.

    A key this API does not know is refused when it carries a value (a typo
    must not pass silently) and dropped when it is ``null``, which is how
    newer clients send optional fields they added.  With ``empty_is_absent``,
    ``[]`` and ``{}`` are dropped as well, as Rust clients send empty lists and
    maps, except for the keys of ``keep_empty``, whose ``[]`` means "none".
    """
    if not isinstance(value, dict):
        raise ZoneError(field or "body", "must be a JSON object")
    given = {}
    for key, item in value.items():
        absent = item is None or (empty_is_absent and _absent(item) and key not in keep_empty)
        if key not in allowed and not absent:
            raise ZoneError(_at(field, key), f"unknown field '{key}'")
        if not absent:
            given[key] = item
    for key in required:
        if key not in given:
            raise ZoneError(_at(field, key), "is required")
    return given


def _int(value, field, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ZoneError(field, "must be an integer")
    if not low <= value <= high:
        raise ZoneError(field, f"must be between {low} and {high}")
    return value


def _bool(value, field):
    if not isinstance(value, bool):
        raise ZoneError(field, "must be true or false")
    return value


def _text(value, field, max_len=1024, ascii_only=True):
    """A string without control characters (and ASCII only, unless told)."""
    if not isinstance(value, str):
        raise ZoneError(field, "must be a string")
    if len(value) > max_len:
        raise ZoneError(field, f"is longer than {max_len} characters")
    control = _CONTROL.search(value)
    if control:
        raise ZoneError(field, f"contains the control character {control.group()!r}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:          # JSON's "\ud800": a lone surrogate half
            raise ZoneError(field, "is not valid Unicode (it holds a lone surrogate)") from None
    if ascii_only and not value.isascii():
        raise ZoneError(field, "must be ASCII (IDNs as xn-- punycode)")
    return value


def _list(value, field, parse_item, most=MAX_LIST):
    if not isinstance(value, list):
        raise ZoneError(field, "must be a JSON array")
    if len(value) > most:
        raise ZoneError(field, f"has more than {most} entries")
    return tuple(parse_item(item, f"{field}[{i}]") for i, item in enumerate(value))


# ---------------------------------------------------------------- names

def _labels(name, field, allow_wildcard=False):
    """Split a relative or absolute name into checked lower-case labels."""
    name = _text(name, field, MAX_NAME + 1).lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ZoneError(field, "must not be empty or the root")
    if len(name) > MAX_NAME:
        raise ZoneError(field, f"is longer than {MAX_NAME} characters")
    labels = name.split(".")
    for i, label in enumerate(labels):
        if label == "*" and allow_wildcard and i == 0:
            continue
        if not label:
            raise ZoneError(field, "has an empty label")
        if len(label) > MAX_LABEL:
            raise ZoneError(field, f"has a label longer than {MAX_LABEL} characters")
        if not _LABEL.match(label) and not _CLASSLESS.match(label):
            raise ZoneError(field, f"label '{label}' may hold only letters, digits, "
                            "'-' and '_', and may not begin or end with '-' (or be RFC "
                            "2317's, such as 0/26)")
    return labels


def parse_zone_name(name, field="zoneName"):
    """A zone name, case-folded, without its final dot; the root is refused."""
    return ".".join(_labels(name, field))


def _absolute(name, zone, field, allow_wildcard=False):
    """``@``, a relative or an absolute name -> absolute, with the final dot."""
    if name == "@":
        return zone + "."
    labels = _labels(name, field, allow_wildcard)
    full = ".".join(labels)
    if not name.endswith("."):
        full = f"{full}.{zone}"
        if len(full) > MAX_NAME:
            raise ZoneError(field, f"is longer than {MAX_NAME} characters within {zone}")
    return full + "."


def _owner(name, zone, field):
    """A record owner: inside the zone, a leftmost ``*`` allowed."""
    owner = _absolute(name, zone, field, allow_wildcard=True)
    if not in_zone(owner, zone):
        raise ZoneError(field, f"'{name}' is not inside the zone {zone}")
    return owner


def in_zone(absolute, zone):
    """Is the absolute name ``absolute`` the zone's apex or below it?"""
    return absolute == zone + "." or absolute.endswith("." + zone + ".")


def _require_host(absolute, field, wildcard=False):
    """named's check-names (``fail`` for primary zones): letters, digits, inner '-'."""
    labels = absolute[:-1].split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    for label in labels:
        if not _HOST_LABEL.match(label):
            raise ZoneError(field, f"'{absolute}' must be a host name: named's check-names "
                            "allows only letters, digits and inner '-' here")
    return absolute


def _host(name, zone, field):
    """A target that named requires to be a host name (NS, MX, SRV, SOA mname)."""
    return _require_host(_absolute(name, zone, field), field)


def _key_name(value, field):
    value = _text(value, field, MAX_KEY_NAME)
    if not _KEY_NAME.match(value) or ".." in value:
        raise ZoneError(field, "must be a key name of letters, digits, '-', '_' and dots")
    return value


def parse_key_name(value):
    """A TSIG key's name as named.conf names it (a setting); ZoneError if it is not one."""
    return _key_name(value, "key")


# ---------------------------------------------------------------- addresses

def _address(value, field):
    """An IPv4 or IPv6 address, canonical; never with a %scope (``fe80::1%"; };``)."""
    text = _text(value, field, 64)
    if "%" in text:
        raise ZoneError(field, "must not carry a %scope")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ZoneError(field, f"'{text}' is not an IPv4 or IPv6 address") from None


def _port(text, field):
    if not _DIGITS.match(text):
        raise ZoneError(field, f"port '{text}' is not a number")
    return _int(int(text), field, 1, MAX_U16)


def _remote(value, field):
    """``IP``, ``IPv4:port``, ``[IPv6]:port`` or ``IP port N`` -> ``IP [port N]``."""
    address, port = parse_server(value, field)
    return f"{address} port {port}" if port else str(address)


def parse_server(value, field):
    """``IP``, ``IPv4:port``, ``[IPv6]:port`` or ``IP port N`` -> (address, port or None).

    >>> parse_server("[2001:DB8::1]:5353", "x")
    (IPv6Address('2001:db8::1'), 5353)
    """
    text = _text(value, field, 80).strip()
    parts = text.split()
    port = None
    if len(parts) == 3 and parts[1] == "port":
        address, port = _address(parts[0], field), _port(parts[2], field)
    elif len(parts) != 1:
        raise ZoneError(field, f"'{text}' is not IP, IP:port, [IPv6]:port or 'IP port N'")
    elif text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep:
            raise ZoneError(field, f"'{text}' is not [IPv6]:port")
        address, port = _address(host, field), _port(rest, field)
        if address.version != 6:
            raise ZoneError(field, f"'{text}': brackets are for IPv6 addresses")
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        address, port = _address(host, field), _port(rest, field)
    else:
        address = _address(text, field)
    return address, port


def _acl_entry(value, field):
    """An address-match entry: an address, a network, any/none/localhost/localnets, or
    ``key NAME`` (a TSIG key, ``key "NAME"`` for named)."""
    text = _text(value, field, MAX_KEY_NAME + 8).strip()
    if text in ACL_KEYWORDS:
        return text
    words = text.split()
    if len(words) == 2 and words[0] == "key":
        return f'key "{_key_name(words[1].strip(chr(34)), field)}"'
    if "%" in text:
        raise ZoneError(field, "must not carry a %scope")
    if "/" not in text:
        return str(_address(text, field))
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as e:
        raise ZoneError(field, f"'{text}' is not an address or network ({e})") from None


# ---------------------------------------------------------------- record data

def _split(value, field, count, what):
    parts = _text(value, field, 2048).split()
    if len(parts) != count:
        raise ZoneError(field, f"must be {what}")
    return parts


def _number(text, field, high):
    if not _DIGITS.match(text):
        raise ZoneError(field, f"'{text}' is not a number")
    return _int(int(text), field, 0, high)


def _character_strings(value, field):
    """TXT text -> its strings as bytes.  ``"a" "b"`` is taken as two strings;
    anything else is one text, however long (it is split when rendered)."""
    text = _text(value, field, MAX_TXT_RDATA, ascii_only=False)
    if _QUOTED_LIST.fullmatch(text):
        return [_unescape(p, field) for p in _QUOTED.findall(text)]
    return [text.encode()]


def _unescape(text, field):
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\":
            if re.match(r"[0-9]{3}", text[i + 1:i + 4]):
                code = int(text[i + 1:i + 4])
                if code > 255:
                    raise ZoneError(field, f"escape \\{code} is not a byte")
                out.append(code)
                i += 4
                continue
            i += 1
        out += text[i].encode()
        i += 1
    return bytes(out)


def _quote(data):
    """Bytes as one zone-file string: ``"`` and ``\\`` escaped, other non-printables \\DDD."""
    out = ['"']
    for byte in data:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def _txt(value, field):
    chunks = [s[i:i + 255] for s in _character_strings(value, field)
              for i in range(0, max(len(s), 1), 255)]
    if sum(len(c) + 1 for c in chunks) > MAX_TXT_RDATA:
        raise ZoneError(field, "is longer than one TXT record can hold")
    return " ".join(_quote(c) for c in chunks)


def _caa(value, field):
    text = _text(value, field, 2048, ascii_only=False).strip()
    parts = text.split(None, 2)
    if len(parts) != 3:
        raise ZoneError(field, "must be 'flags tag value', e.g. '0 issue \"ca.example\"'")
    flags = _number(parts[0], field, 255)
    if not _CAA_TAG.match(parts[1]):
        raise ZoneError(field, f"CAA tag '{parts[1]}' must be 1-15 letters or digits")
    raw = parts[2]
    quoted = _QUOTED.fullmatch(raw)
    data = _unescape(quoted.group(1), field) if quoted else raw.encode()
    return f"{flags} {parts[1].lower()} {_quote(data)}"


def _rdata(rtype, value, priority, zone, field, priority_field):
    """The rendered RDATA of one record, from its parsed parts."""
    if priority is not None and rtype not in ("MX", "SRV"):
        raise ZoneError(priority_field, "is only for MX and SRV records")
    if rtype == "A":
        address = _address(value, field)
        if address.version != 4:
            raise ZoneError(field, f"'{value}' is not an IPv4 address")
        return str(address)
    if rtype == "AAAA":
        address = _address(value, field)
        if address.version != 6:
            raise ZoneError(field, f"'{value}' is not an IPv6 address")
        return str(address)
    if rtype == "CNAME":
        return _absolute(value, zone, field)
    if rtype == "NS":
        return _host(value, zone, field)
    if rtype == "PTR":
        target = _absolute(value, zone, field)
        if zone.endswith((".in-addr.arpa", ".ip6.arpa")):
            _require_host(target, field)
        return target
    if rtype == "MX":
        if priority is None:
            pref, host = _split(value, field, 2, "'preference host', or set priority")
            priority = _number(pref, field, MAX_U16)
        else:
            host = value
        exchange = "." if host == "." else _host(host, zone, field)   # "." is null MX
        return f"{priority} {exchange}"
    if rtype == "SRV":
        if priority is None:
            prio, weight, port, target = _split(
                value, field, 4, "'priority weight port target', or set priority")
            priority = _number(prio, field, MAX_U16)
        else:
            weight, port, target = _split(value, field, 3, "'weight port target'")
        target = "." if target == "." else _host(target, zone, field)
        return (f"{priority} {_number(weight, field, MAX_U16)} "
                f"{_number(port, field, MAX_U16)} {target}")
    if rtype == "TXT":
        return _txt(value, field)
    return _caa(value, field)


def _record_head(item, field, zone):
    """(owner, type) of a record body: a type of RECORD_TYPES, an owner inside the zone
    that named's check-names takes for that type."""
    rtype = _text(item["type"], _at(field, "type"), 10).upper()
    if rtype not in RECORD_TYPES:
        raise ZoneError(_at(field, "type"), f"'{item['type']}' is not one of "
                        + ", ".join(RECORD_TYPES))
    owner = _owner(item["name"], zone, _at(field, "name"))
    if rtype in ("A", "AAAA", "MX"):
        _require_host(owner, _at(field, "name"), wildcard=True)
    if rtype == "CNAME" and owner == zone + ".":
        raise ZoneError(_at(field, "name"), "a CNAME cannot be at the zone apex")
    return owner, rtype


def _optional_int(item, key, field, high, default=None):
    value = item.get(key)
    return default if value is None else _int(value, _at(field, key), 0, high)


def _record(item, field, zone, default_ttl=None, empty_is_absent=True):
    item = _object(item, field, ("name", "type", "value", "ttl", "priority"),
                   ("name", "type", "value"), empty_is_absent=empty_is_absent)
    owner, rtype = _record_head(item, field, zone)
    priority = _optional_int(item, "priority", field, MAX_U16)
    rdata = _rdata(rtype, item["value"], priority, zone, _at(field, "value"),
                   _at(field, "priority"))
    return Record(owner, rtype, _optional_int(item, "ttl", field, MAX_TTL, default_ttl), rdata)


# ---------------------------------------------------------------- the bodies

def today_serial(today=None):
    """``YYYYMMDD01`` for today (UTC)."""
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    return int(today.strftime("%Y%m%d")) * 100 + 1


def serial_gt(a, b):
    """RFC 1982: is serial ``a`` greater than ``b``?"""
    return a != b and ((a > b and a - b < 2**31) or (a < b and b - a > 2**31))


def next_serial(current, today=None):
    """The serial after ``current``: today's ``YYYYMMDD01`` if that is greater, else +1."""
    dated = today_serial(today)
    return dated if serial_gt(dated, current) else (current + 1) & MAX_U32


def check_serial_raised(old, new, field="zoneConfig.soa.serial"):
    """An update must raise the serial (RFC 1982), or secondaries never see it."""
    if not serial_gt(new, old):
        raise ZoneError(field, f"{new} does not raise the current serial {old}; "
                        f"use {next_serial(old)} or leave it out")


def _admin_email(value, zone, field):
    text = _text(value, field, MAX_NAME + 1)
    if "@" in text:
        local, _, domain = text.partition("@")
        if not local or "." in local or not _LABEL.match(local.lower()):
            raise ZoneError(field, "the part before '@' must be one label, without dots")
        text = f"{local}.{domain.rstrip('.')}."
    mailbox = _absolute(text, zone, field)
    domain = mailbox.split(".", 1)[1]
    if domain:
        _require_host(domain, field)
    return mailbox


def _soa(value, zone, field):
    value = _object(value, field, ("primaryNs", "adminEmail", "serial", *SOA_DEFAULTS),
                    ("primaryNs", "adminEmail"), empty_is_absent=True)
    timers = {}
    for key, default in SOA_DEFAULTS.items():
        given = value.get(key)
        timers[key] = default if given is None else _int(given, _at(field, key), 0, MAX_TTL)
    serial = value.get("serial")
    serial = today_serial() if serial is None else _int(serial, f"{field}.serial", 0, MAX_U32)
    return Soa(_host(value["primaryNs"], zone, f"{field}.primaryNs"),
               _admin_email(value["adminEmail"], zone, f"{field}.adminEmail"),
               serial, timers["refresh"], timers["retry"], timers["expire"],
               timers["negativeTtl"])


# The address lists a create or a PATCH may set: JSON key, Zone attribute, parser.
ADDRESS_LISTS = (("alsoNotify", "also_notify", _remote),
                 ("allowTransfer", "allow_transfer", _acl_entry),
                 ("allowUpdate", "allow_update", _acl_entry))

ZONE_CONFIG_FIELDS = ("ttl", "soa", "nameServers", "nameServerIps", "records", "alsoNotify",
                      "allowTransfer", "allowUpdate", "primaries", "dnssecPolicy",
                      "inlineSigning")
# What a secondary takes from its primaries, or cannot use: bindy sends placeholders
# (an SOA, empty name servers, its update key) with every secondary, and they are ignored.
SECONDARY_IGNORES = ("ttl", "soa", "nameServers", "nameServerIps", "allowUpdate")


def parse_zone(body):
    """The create body of the API -> a Zone.  Raises ZoneError naming the field.

    ``null``, ``[]`` and ``{}`` mean a field is absent (but ``[]`` for an
    address list means no one), and a secondary ignores the fields of
    SECONDARY_IGNORES and ``updateKeyName``:

    >>> parse_zone({"zoneName": "sec.example", "zoneType": "secondary", "zoneConfig": {
    ...     "primaries": ["[fd00::1]:5353"], "records": [], "nameServers": [],
    ...     "nameServerIps": {}, "soa": {"primaryNs": "", "adminEmail": ""},
    ...     "dnssecPolicy": None}, "updateKeyName": "bindy-key"}).primaries
    ('fd00::1 port 5353',)
    """
    body = _object(body, "", ("zoneName", "zoneType", "zoneConfig", "updateKeyName"),
                   ("zoneName", "zoneType", "zoneConfig"), empty_is_absent=True,
                   keep_empty=("zoneConfig",))       # {}: say which of its fields is missing
    name = parse_zone_name(body["zoneName"])
    kind = ZONE_TYPES.get(body["zoneType"]) if isinstance(body["zoneType"], str) else None
    if kind is None:
        raise ZoneError("zoneType", "must be \"primary\" or \"secondary\"")
    if not isinstance(body["zoneConfig"], dict):
        raise ZoneError("zoneConfig", "must be a JSON object")
    config = body["zoneConfig"]
    if kind == "secondary":
        config = {k: v for k, v in config.items() if k not in SECONDARY_IGNORES}
        body.pop("updateKeyName", None)
    # An empty address list stays: `allowTransfer: []` is "no one", where leaving the
    # clause out would let any host transfer the zone (named 9.18's default).
    config = _object(config, "zoneConfig", ZONE_CONFIG_FIELDS,
                     ("ttl", "soa", "nameServers") if kind == "primary" else ("primaries",),
                     empty_is_absent=True, keep_empty=[key for key, _, _ in ADDRESS_LISTS])
    get = config.get
    zone = {"name": name, "type": kind}
    if get("ttl") is not None:
        zone["ttl"] = _int(get("ttl"), "zoneConfig.ttl", 0, MAX_TTL)
    if get("soa") is not None:
        zone["soa"] = _soa(get("soa"), name, "zoneConfig.soa")
    if get("nameServers") is not None:
        zone["name_servers"] = _list(get("nameServers"), "zoneConfig.nameServers",
                                     lambda v, f: _host(v, name, f))
    if get("nameServerIps") is not None:
        zone["glue"] = _glue(get("nameServerIps"), name)
    if get("records") is not None:
        if kind != "primary":
            raise ZoneError("zoneConfig.records", "a secondary zone takes its records from its "
                            "primaries by zone transfer; send records with a primary zone")
        zone["records"] = _list(get("records"), "zoneConfig.records",
                                lambda v, f: _record(v, f, name), MAX_RECORDS)
        _check_cname_conflicts(zone, name)
    if kind == "primary":
        _check_name_server_addresses(zone, name)
    for key, attr, parse in ADDRESS_LISTS:
        if get(key) is not None:
            zone[attr] = _list(get(key), f"zoneConfig.{key}", parse)
    if get("primaries") is not None:
        if kind != "secondary":
            raise ZoneError("zoneConfig.primaries", "only a secondary zone has primaries")
        zone["primaries"] = _list(get("primaries"), "zoneConfig.primaries", _remote)
    if get("dnssecPolicy") is not None:
        policy = _text(get("dnssecPolicy"), "zoneConfig.dnssecPolicy", MAX_POLICY)
        if not _POLICY.match(policy):
            raise ZoneError("zoneConfig.dnssecPolicy",
                            "must be a policy name of letters, digits, '-', '_' and dots")
        zone["dnssec_policy"] = policy
    if get("inlineSigning") is not None:
        zone["inline_signing"] = _bool(get("inlineSigning"), "zoneConfig.inlineSigning")
    if body.get("updateKeyName") is not None:
        zone["update_key"] = _key_name(body["updateKeyName"], "updateKeyName")
    return Zone(**zone)


def _glue(value, zone):
    """``{name server: IP}`` -> A/AAAA records for the servers inside the zone.

    Addresses of servers outside the zone are checked but not written:
    named ignores out-of-zone data in a zone file.
    """
    field = "zoneConfig.nameServerIps"
    if not isinstance(value, dict):
        raise ZoneError(field, "must be a JSON object of name server: address")
    if len(value) > MAX_LIST:
        raise ZoneError(field, f"has more than {MAX_LIST} entries")
    glue = []
    for server, address in value.items():
        at = f"{field}.{server}"
        host = _host(server, zone, at)
        ip = _address(address, at)
        if in_zone(host, zone):
            glue.append(Record(host, "A" if ip.version == 4 else "AAAA", None, str(ip)))
    return tuple(glue)


def _check_cname_conflicts(zone, name):
    """A CNAME owner may have no other data (RFC 1034 §3.6.2); named refuses the zone."""
    others = {name + "."} | {r.owner for r in zone.get("glue", ())}
    others |= {r.owner for r in zone["records"] if r.type != "CNAME"}
    cnames = set()
    for i, record in enumerate(zone["records"]):
        if record.type == "CNAME":
            if record.owner in others or record.owner in cnames:
                raise ZoneError(f"zoneConfig.records[{i}].name",
                                f"'{record.owner}' has a CNAME and other data")
            cnames.add(record.owner)


def _check_name_server_addresses(zone, name):
    """An in-zone name server needs an A or AAAA record, or named will not load the zone."""
    addressed = {r.owner for r in zone.get("glue", ()) + zone.get("records", ())
                 if r.type in ("A", "AAAA")}
    servers = [(f"zoneConfig.nameServers[{i}]", ns)
               for i, ns in enumerate(zone.get("name_servers", ()))]
    servers += [(f"zoneConfig.records[{i}].value", r.rdata)
                for i, r in enumerate(zone.get("records", ())) if r.type == "NS"]
    for field, server in servers:
        if in_zone(server, name) and server not in addressed:
            raise ZoneError(field, f"{server} is inside the zone, so named needs its address: "
                            "add it to nameServerIps or give it an A or AAAA record")


def parse_zone_update(body):
    """The PATCH body -> ZoneUpdate: at least one of the three lists; ``[]`` clears."""
    fields = [key for key, _, _ in ADDRESS_LISTS]
    body = _object(body, "", fields)
    if all(body.get(key) is None for key in fields):
        raise ZoneError("body", "give at least one of alsoNotify, allowTransfer, allowUpdate")
    lists = {}
    for key, attr, parse in ADDRESS_LISTS:
        if body.get(key) is not None:
            lists[attr] = _list(body[key], key, parse)
    return ZoneUpdate(**lists)


def apply_update(zone, update):
    """The zone with the lists of ``update`` replaced; every other clause kept."""
    changes = {attr: value for attr, value in update._asdict().items() if value is not None}
    return zone._replace(**changes)


# ---------------------------------------------------------------- the records API

DEFAULT_RECORD_TTL = 3600        # a record's TTL when the body gives none (the Rust bindcar's)
MAX_RRSETS = 1000                # record sets one PATCH may change
# Records a listing leaves out unless asked (?all=true): named makes them, not the user.
GENERATED_TYPES = ("SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY",
                   "TYPE65534")


RRsetChange = collections.namedtuple(  # a record set of a records PATCH: replaced by
    "RRsetChange", (                    # ``values``, or deleted (values None)
        "owner",                        # absolute, with the final dot
        "type", "ttl",
        "values"))                      # rendered RDATA, or None


def parse_record(body, zone):
    """POST .../records -> a Record; ``ttl`` 3600 unless given.

    >>> parse_record({"name": "@", "type": "mx", "value": "mail", "priority": 10}, "example.com")
    Record(owner='example.com.', type='MX', ttl=3600, rdata='10 mail.example.com.')
    """
    return _record(body, "", zone, DEFAULT_RECORD_TTL, empty_is_absent=False)


def parse_record_update(body, zone):
    """PUT .../records -> (current Record, new Record).  ``priority`` goes with both
    values, as the Rust bindcar takes it; ``ttl`` (3600 unless given) is the new one's."""
    body = _object(body, "", ("name", "type", "currentValue", "newValue", "ttl", "priority"),
                   ("name", "type", "currentValue", "newValue"))
    owner, rtype = _record_head(body, "", zone)
    priority = _optional_int(body, "priority", "", MAX_U16)
    ttl = _optional_int(body, "ttl", "", MAX_TTL, DEFAULT_RECORD_TTL)
    current = _rdata(rtype, body["currentValue"], priority, zone, "currentValue", "priority")
    new = _rdata(rtype, body["newValue"], priority, zone, "newValue", "priority")
    return Record(owner, rtype, ttl, current), Record(owner, rtype, ttl, new)


def parse_record_removal(body, zone):
    """DELETE .../records -> (owner, type, rendered value), the value None for the whole
    record set.  ``priority`` (ours) may go with an MX or SRV value."""
    body = _object(body, "", ("name", "type", "value", "priority"), ("name", "type"))
    owner, rtype = _record_head(body, "", zone)
    if body.get("value") is None:
        if body.get("priority") is not None:
            raise ZoneError("priority", "goes with a value; without one the whole record set "
                            "is deleted")
        _refuse_apex_ns_removal(owner, rtype, zone, "type")
        return owner, rtype, None
    priority = _optional_int(body, "priority", "", MAX_U16)
    return owner, rtype, _rdata(rtype, body["value"], priority, zone, "value", "priority")


def parse_rrsets(body, zone):
    """PATCH .../records -> RRsetChanges, checked as one: no record set twice, no CNAME
    beside other data that the batch itself adds."""
    body = _object(body, "", ("rrsets",), ("rrsets",))
    changes = _list(body["rrsets"], "rrsets", lambda v, f: _rrset(v, f, zone), MAX_RRSETS)
    if not changes:
        raise ZoneError("rrsets", "must hold at least one change")
    seen, added = {}, {}
    for i, change in enumerate(changes):
        key = (change.owner, change.type)
        if key in seen:
            raise ZoneError(f"rrsets[{i}]", f"{change.owner} {change.type} is changed already "
                            f"by rrsets[{seen[key]}]")
        seen[key] = i
        if change.values:
            added.setdefault(change.owner, []).append((i, change.type))
    for owner, sets in added.items():
        if len(sets) > 1 and any(rtype == "CNAME" for _, rtype in sets):
            raise ZoneError(f"rrsets[{sets[-1][0]}].name",
                            f"'{owner}' would have a CNAME and other data")
    return changes


def _rrset(item, field, zone):
    item = _object(item, field, ("name", "type", "ttl", "changetype", "records"),
                   ("name", "type", "changetype"))
    owner, rtype = _record_head(item, field, zone)
    kind = _text(item["changetype"], _at(field, "changetype"), 10).upper()
    if kind not in ("REPLACE", "DELETE"):
        raise ZoneError(_at(field, "changetype"), "must be REPLACE or DELETE")
    ttl = _optional_int(item, "ttl", field, MAX_TTL, DEFAULT_RECORD_TTL)
    values = None
    if kind == "DELETE" and item.get("records"):
        raise ZoneError(_at(field, "records"), "a DELETE takes no records")
    if kind == "REPLACE":
        if "records" not in item:
            raise ZoneError(_at(field, "records"), "is required with REPLACE (the record "
                            "set's new values; [] deletes it)")
        values = _list(item["records"], _at(field, "records"),
                       lambda v, f: _rdata(rtype, v, None, zone, f, f))
        values = tuple(dict.fromkeys(values)) or None        # the same value twice is once
        if rtype == "CNAME" and values and len(values) > 1:
            raise ZoneError(_at(field, "records"), "a CNAME record set holds one value")
    if values is None:
        _refuse_apex_ns_removal(owner, rtype, zone, _at(field, "changetype"))
    return RRsetChange(owner, rtype, ttl, values)


def _refuse_apex_ns_removal(owner, rtype, zone, field):
    """named ignores a delete of the apex NS record set (RFC 2136 §3.4.2.4); a
    200 that changed nothing would mislead, so it is refused up front."""
    if rtype == "NS" and owner == zone + ".":
        raise ZoneError(field, "a zone's apex NS record set cannot be deleted (named ignores "
                        "it): replace it with new values instead")


def parse_owner(name, zone, field="name"):
    """A record's name as the records API takes it (``@``, relative, or absolute inside
    the zone) -> absolute, with the final dot."""
    return _owner(name, zone, field)


def relative_name(owner, zone):
    """``www.example.com.`` in ``example.com`` -> ``www``; the apex -> ``@``."""
    owner = owner.rstrip(".")
    if owner == zone:
        return "@"
    if owner.endswith("." + zone):
        return owner[:-len(zone) - 1]
    return owner + "."


def listed_record(owner, rtype, ttl, value, zone):
    """One record of a listing, in the shape of ``zoneConfig.records``: MX and SRV with
    their ``priority`` apart from ``value``, as a create takes them.

    >>> listed_record("example.com.", "MX", 300, "10 mail.example.com.", "example.com")
    {'name': '@', 'type': 'MX', 'value': 'mail.example.com.', 'ttl': 300, 'priority': 10}
    """
    entry = {"name": relative_name(owner, zone), "type": rtype, "value": value, "ttl": ttl}
    if rtype in ("MX", "SRV") and not value.startswith("\\#"):
        priority, _, rest = value.partition(" ")
        entry["value"], entry["priority"] = rest, int(priority)
    return entry


# ---------------------------------------------------------------- external-dns endpoints

# external-dns's webhook protocol speaks of a record set as an endpoint: ``dnsName``
# (absolute, no final dot), ``recordType``, ``targets`` (its values, names without the
# final dot except in SRV, TXT as its text), ``recordTTL`` (0: unset).  These make
# Records of one and read one back from named's records.

Endpoint = collections.namedtuple("Endpoint", (
    "name",                     # as sent, not yet checked
    "type", "ttl", "targets", "set_identifier",
    "labels"))                  # {str: str}, kept as sent: external-dns's own
_ENDPOINT_FIELDS = {"dnsname": "dnsName", "targets": "targets", "recordtype": "recordType",
                    "setidentifier": "setIdentifier", "recordttl": "recordTTL",
                    "labels": "labels", "providerspecific": "providerSpecific"}
_STAR_LABEL = re.compile(r"[a-z0-9_*-]{1,63}\Z")
MAX_TARGETS = 100               # values of one record set (named's max-records-per-type)


def parse_endpoint(item, field):
    """One endpoint as external-dns's Go decoder reads it: keys matched without case,
    unknown keys and ``null`` ignored; a value of the wrong JSON type is a ZoneError
    (an undecodable body).  Its meaning is checked by ``endpoint_records``."""
    if not isinstance(item, dict):
        raise ZoneError(field, "must be a JSON object")
    given = {}
    for key, value in item.items():
        name = _ENDPOINT_FIELDS.get(key.lower())
        if name is not None and value is not None:
            given[name] = value
    for key in ("dnsName", "recordType", "setIdentifier"):
        if not isinstance(given.get(key, ""), str):
            raise ZoneError(_at(field, key), "must be a string")
    targets = given.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ZoneError(_at(field, "targets"), "must be an array of strings")
    ttl = given.get("recordTTL", 0)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise ZoneError(_at(field, "recordTTL"), "must be an integer")
    labels = given.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ZoneError(_at(field, "labels"), "must be an object of strings")
    if not isinstance(given.get("providerSpecific", []), list):
        raise ZoneError(_at(field, "providerSpecific"), "must be an array")
    return Endpoint(given.get("dnsName", ""), given.get("recordType", ""), ttl,
                    tuple(targets), given.get("setIdentifier", ""), labels)


def endpoint_zone(name, zones):
    """The zone of ``zones`` (names without the final dot) that holds ``name``: the
    longest suffix of it, or None.  ZoneError for a name too long to be one."""
    if len(name) > MAX_NAME + 1:
        raise ZoneError("dnsName", f"is longer than {MAX_NAME} characters")
    labels = name.lower().rstrip(".").split(".")
    for i in range(len(labels)):
        if ".".join(labels[i:]) in zones:
            return ".".join(labels[i:])
    return None


def endpoint_records(endpoint, zone, field=""):
    """(owner, type, TTL, rendered values) of an endpoint in ``zone``, checked as the
    records API checks a record; ZoneError says why bindcar can never apply it.

    >>> endpoint_records(Endpoint("Mail.Example.com", "MX", 0, ("10 mx.example.net",), "",
    ...                           {}), "example.com")
    ('mail.example.com.', 'MX', 3600, ('10 mx.example.net.',))
    """
    rtype = endpoint.type.upper()
    if rtype not in RECORD_TYPES:
        raise ZoneError(_at(field, "recordType"), f"'{endpoint.type}' is not a type bindcar "
                        "stores (" + ", ".join(RECORD_TYPES) + ")")
    if endpoint.set_identifier:
        raise ZoneError(_at(field, "setIdentifier"), "plain DNS has one record set per name "
                        "and type: routing policies (setIdentifier) are not supported")
    name_field = _at(field, "dnsName")
    name = _text(endpoint.name, name_field, MAX_NAME + 1).lower().rstrip(".")
    if rtype == "TXT":
        owner = _txt_owner(name, zone, name_field)
    else:
        try:
            owner, rtype = _record_head({"name": name + ".", "type": rtype}, "", zone)
        except ZoneError as e:              # the records API's field names, as external-dns's
            raise ZoneError({"name": name_field}.get(e.field, e.field), e.message) from None
    if (owner, rtype) == (zone + ".", "NS"):
        raise ZoneError(_at(field, "recordType"), "the apex NS is the zone's own (named "
                        "never lets it go empty); change it through bindcar's zone API")
    targets_field = _at(field, "targets")
    if not endpoint.targets:
        raise ZoneError(targets_field, "has no value")
    if len(endpoint.targets) > MAX_TARGETS:
        raise ZoneError(targets_field, f"has more than {MAX_TARGETS} values")
    if rtype == "CNAME" and len(set(endpoint.targets)) > 1:
        raise ZoneError(targets_field, "a CNAME has one target")
    values = tuple(dict.fromkeys(_endpoint_value(rtype, target, zone, f"{targets_field}[{i}]")
                                 for i, target in enumerate(endpoint.targets)))
    ttl = _int(endpoint.ttl, _at(field, "recordTTL"), 0, MAX_TTL) or DEFAULT_RECORD_TTL
    return owner, rtype, ttl, values


def _txt_owner(name, zone, field):
    """A TXT record's name as external-dns's registry makes them: labels of letters,
    digits, '-', '_' and '*' anywhere (``a-*.example.com``, ``cname-abc-.example.com``:
    named's check-names does not apply to TXT owners)."""
    for i, label in enumerate(name.split(".")):
        if not _STAR_LABEL.match(label):
            raise ZoneError(field, f"label '{label}' may hold only letters, digits, '-', '_' "
                            "and '*'" if label else "has an empty label")
        if label == "*" and i:
            raise ZoneError(field, "a '*' label is a wildcard only as the first label")
    if not in_zone(name + ".", zone):
        raise ZoneError(field, f"'{name}' is not inside the zone {zone}")
    return name + "."


def _endpoint_value(rtype, target, zone, field):
    """One target -> rendered RDATA.  Names in targets are absolute without their dot;
    a TXT target is the record's text itself, quotes and all (external-dns's registry
    sends ``"heritage=external-dns,..."``): one string, split only past 255 bytes."""
    if rtype == "TXT":
        data = _text(target, field, MAX_TXT_RDATA, ascii_only=False).encode()
        chunks = [data[i:i + 255] for i in range(0, max(len(data), 1), 255)]
        if sum(len(c) + 1 for c in chunks) > MAX_TXT_RDATA:
            raise ZoneError(field, "is longer than one TXT record can hold")
        return " ".join(_quote(c) for c in chunks)
    target = _text(target, field, 2048, ascii_only=False).strip()   # a CAA's, at most
    if rtype in ("CNAME", "NS", "PTR", "MX", "SRV"):
        head, _, host = target.rpartition(" ")
        if host and host != "." and not host.endswith("."):
            target = f"{head} {host}." if head else host + "."
    return _rdata(rtype, target, None, zone, field, field)


def endpoint_target(rtype, value):
    """A record's value as named gives it (presentation text) -> the target external-dns
    reads back: names lower case without the final dot (SRV's keeps it), a TXT record's
    strings joined into its text; None for a value bindcar cannot show (``\\#``)."""
    if value.startswith("\\#"):
        return None
    if rtype == "TXT":
        data = b"".join(_unescape(s, "value") for s in _QUOTED.findall(value))
        return data.decode("utf-8", "replace")
    if rtype in ("CNAME", "NS", "PTR", "MX"):
        return value.lower().rstrip(".") or "."
    if rtype == "SRV":
        return value.lower()
    return value


def same_targets(rtype, a, b):
    """Do two lists of targets name the same record set?  Without regard to order, case,
    or (TXT) one pair of surrounding quotes: external-dns compares so, and its registry
    sends its TXT text quoted whatever another writer stored."""
    def key(target):
        target = target.strip()
        if rtype == "TXT":
            return target[1:-1] if len(target) > 1 and target[0] == target[-1] == '"' \
                else target
        return target.lower().rstrip(".")
    return sorted(map(key, a)) == sorted(map(key, b))


# ---------------------------------------------------------------- catalog zones (RFC 9432)

def catalog_member_id(zone, incarnation=0):
    """The label naming ``zone`` in a catalog: the SHA-1, in hex, of its name in wire
    format (as BIND's ARM suggests) followed by ``incarnation`` (a create's time in
    nanoseconds) as 8 bytes.  Each create of a name gets a label of its own: a zone
    deleted and created again is a new member, which a secondary transfers afresh
    (RFC 9432 §5.6) whatever the serial of the zone it held before.

    >>> catalog_member_id("Example.COM.")
    'f0439ff5ebb73cd5498606f024eb0440579757e0'
    """
    wire = b"".join(bytes([len(label)]) + label.encode() for label in
                    parse_zone_name(zone).split(".")) + b"\0"
    return hashlib.sha1(wire + incarnation.to_bytes(8, "big")).hexdigest()


def catalog_member(zone, catalog, incarnation=0):
    """The member record of ``zone``: (owner, PTR target), ``<id>.zones.<catalog>.``."""
    return (f"{catalog_member_id(zone, incarnation)}.zones.{catalog}.",
            f"{parse_zone_name(zone)}.")


def with_transfer_key(entries, key):
    """An ``allow-transfer`` list with ``key "KEY"`` added, as ``transfer_entries`` adds
    the update keys (``none`` goes)."""
    return transfer_entries(entries, (f'key "{key}"',) if key else ())


def secondaries_group(addresses):
    """The secondaries' addresses as one nested entry of an address-match list,
    ``{ 192.0.2.2; 192.0.2.3; }`` (``{ none; }`` while there are none).  named keeps a
    nest as written (``showzone`` shows it back), and no API input can make one: it
    marks the entry bindcar keeps in step with the secondaries' addresses."""
    return "{ " + "".join(f"{a}; " for a in addresses) + "}" if addresses else "{ none; }"


def is_group(entry):
    return entry.startswith("{")


def with_transfer_defaults(zone, key=None, addresses=None):
    """A primary zone as the secondaries need it: its ``allow-transfer`` gets the
    transfer ``key`` (added to any list given, even []); without a key, a zone created
    without the list gets the group of the secondaries' ``addresses`` (None: there are
    no secondaries).  No ``also-notify``: bindcar NOTIFYs the secondaries itself, at
    the addresses they have now."""
    if key:
        return zone._replace(allow_transfer=with_transfer_key(zone.allow_transfer or (), key))
    if zone.allow_transfer is None and addresses is not None:
        return zone._replace(allow_transfer=(secondaries_group(addresses),))
    return zone


def catalog_zone(catalog, transfer, update_key, serial):
    """The catalog zone bindcar makes when named has none: an SOA, the NS ``invalid.``
    RFC 9432 asks for, ``version TXT "2"``; updates by ``update_key``, transfers by the
    ``transfer`` entries (the transfer key, or the secondaries' addresses), each change
    sent at once (``notify-delay 0``: named's 5 s would hold back a second change that
    soon).  A short refresh makes up for a NOTIFY lost."""
    return parse_zone({
        "zoneName": catalog, "zoneType": "primary", "updateKeyName": update_key,
        "zoneConfig": {
            "ttl": 3600, "nameServers": ["invalid."],
            "soa": {"primaryNs": "invalid.", "adminEmail": "invalid.", "serial": serial,
                    "refresh": 60, "retry": 30, "negativeTtl": 60},
            "records": [{"name": "version", "type": "TXT", "value": "2"}]}})._replace(
                notify_delay=0, allow_transfer=tuple(transfer))


# ---------------------------------------------------------------- rendering

def render_zone_file(zone):
    """The zone file of a primary zone: the MARKER line, $TTL, SOA, NS, glue, then the
    records given."""
    soa = zone.soa
    origin = zone.name + "."
    lines = [f"{MARKER}{zone.name}", f"$TTL {zone.ttl}",
             f"{origin} IN SOA {soa.primary_ns} {soa.admin_email} {soa.serial} "
             f"{soa.refresh} {soa.retry} {soa.expire} {soa.negative_ttl}"]
    lines += [f"{origin} IN NS {ns}" for ns in zone.name_servers]
    for record in zone.glue + zone.records:
        ttl = "" if record.ttl is None else f" {record.ttl}"
        lines.append(f"{record.owner}{ttl} IN {record.type} {record.rdata}")
    return "\n".join(lines) + "\n"


def _block(entries):
    return "{ " + "".join(f"{e}; " for e in entries) + "}" if entries else "{ none; }"


def render_zone_clause(zone, file_path):
    """The ``{ ... };`` of ``addzone``/``modzone`` for this zone.

    It starts with ``{`` (leading whitespace aborts named 9.18) and ends with
    the ``;`` that named requires.  Raises ZoneError if named could not take
    it in one control message.
    """
    if any(ch in file_path for ch in '"\\') or any(ord(ch) < 32 for ch in file_path):
        raise ValueError(f"zone file path {file_path!r} cannot be quoted for named")
    parts = [f"type {zone.type};", f'file "{file_path}";']
    if zone.primaries:
        parts.append(f"primaries {_block(zone.primaries)};")
    if zone.also_notify:
        parts.append(f"also-notify {_block(zone.also_notify)};")
    update = _unique(((f'key "{zone.update_key}"',) if zone.update_key else ()) +
                     (zone.allow_update or ()))
    if zone.allow_transfer is not None:
        parts.append(f"allow-transfer {_block(transfer_entries(zone.allow_transfer, update))};")
    if update:
        parts.append(f"allow-update {_block(update)};")
    if zone.dnssec_policy:
        parts.append(f'dnssec-policy "{zone.dnssec_policy}";')
    if zone.inline_signing is not None:
        parts.append(f"inline-signing {'yes' if zone.inline_signing else 'no'};")
    if zone.notify_delay is not None:
        parts.append(f"notify-delay {int(zone.notify_delay)};")
    return _clause(parts, "zoneConfig")


def _unique(entries):
    return tuple(dict.fromkeys(entries))


def transfer_entries(transfer, update):
    """An explicit ``allow-transfer`` list, with every key of ``allow-update`` added: a
    key that may change a zone may read it (``GET .../records`` reads the zone by AXFR
    with bindcar's update key).  ``none`` goes when a key comes: named reads it as
    "refuse", and would never reach the key.

    >>> transfer_entries((), ('key "k"', "192.0.2.1"))
    ('key "k"',)
    """
    keys = [e for e in update if e.startswith("key ")]
    if not keys:
        return tuple(transfer)
    return _unique([e for e in transfer if e != "none"] + keys)


def _clause(parts, field):
    """``{ part part ... };``, refused (at ``field``) if named could not take it in one message."""
    clause = "{ " + " ".join(parts) + " };"
    if len(clause) > MAX_CLAUSE:
        raise ZoneError(field, f"the zone's configuration would be {len(clause)} bytes; "
                        f"named's control channel takes at most {MAX_CLAUSE}")
    return clause


# ---------------------------------------------------------------- named's own clause (showzone)

_CONF_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([{};])|([^\s{};"]+))')


def _conf_tokens(text):
    """Tokens of named.conf text as (text, quoted) pairs; comments are not expected."""
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _CONF_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot read named's zone configuration at {text[pos:pos + 20]!r}")
        quoted, special, word = match.groups()
        if quoted is not None:
            tokens.append((re.sub(r"\\(.)", r"\1", quoted), True))
        else:
            tokens.append((special or word, False))
        pos = match.end()
    return tokens


def _conf_statements(tokens, pos):
    """Statements of a ``{ ... }`` block starting after its ``{``: (statements, end)."""
    statements, current = [], []
    while pos < len(tokens):
        text, quoted = tokens[pos]
        if quoted or text not in "{};":
            current.append(tokens[pos])
            pos += 1
        elif text == "{":
            inner, pos = _conf_statements(tokens, pos + 1)
            current.append(inner)
        elif text == ";":
            if current:
                statements.append(current)
            current, pos = [], pos + 1
        else:                                   # "}" closes this block
            if current:
                raise ValueError("a statement in named's zone configuration lacks its ';'")
            return statements, pos + 1
    raise ValueError("named's zone configuration is not closed")


_KEY_LINE = re.compile(r"key: (\d+) \(([^)]*)\), (\w+)")
_STATUS_FIELD = re.compile(r"\s+(?:- )?([a-z][a-z ]*):\s+(.*\S)")


def parse_dnssec_status(text):
    """``rndc dnssec -status <zone>`` (named 9.18) -> (policy, [key fields]), or None for
    a zone without a dnssec-policy.  Each key: ``tag``, ``algorithm``, ``role``, then
    its lines as fields (``published``, ``keySigning``, ``zoneSigning``, the states
    ``goal``, ``dnskey``, ``ds``, ``zoneRrsig``, ``keyRrsig``) and ``rollover``.

    >>> parse_dnssec_status("dnssec-policy: default\\nkey: 4884 (ECDSAP256SHA256), CSK\\n"
    ...     "  published:      yes\\n  No rollover scheduled\\n  - ds:             hidden")
    ('default', [{'tag': 4884, 'algorithm': 'ECDSAP256SHA256', 'role': 'CSK', \
'published': 'yes', 'rollover': 'No rollover scheduled', 'ds': 'hidden'}])
    """
    if "dnssec-policy:" not in text:
        return None
    policy, keys = None, []
    for line in text.splitlines():
        key, field = _KEY_LINE.match(line), _STATUS_FIELD.match(line)
        if line.startswith("dnssec-policy:"):
            policy = line.split(":", 1)[1].strip()
        elif key:
            keys.append({"tag": int(key[1]), "algorithm": key[2], "role": key[3]})
        elif keys and field:                        # "  key signing:    yes - since ..."
            words = field[1].split()
            keys[-1][words[0] + "".join(w.capitalize() for w in words[1:])] = field[2]
        elif keys and line.strip():                 # "  Next rollover scheduled on ..."
            keys[-1]["rollover"] = line.strip()
    return policy, keys


def parse_checkds(body):
    """POST .../dnssec/checkds -> ("published" or "withdrawn", key tag or None)."""
    body = _object(body, "", ("published", "withdrawn", "key"))
    given = [word for word in ("published", "withdrawn") if body.get(word) is not None]
    if len(given) != 1 or _bool(body[given[0]], given[0]) is not True:
        raise ZoneError("published", 'give one of "published": true or "withdrawn": true')
    key = body.get("key")
    return given[0], None if key is None else _int(key, "key", 0, MAX_U16)


def parse_shown_zone(text):
    """``showzone`` output -> the statements of its ``{ }`` block.

    Each statement is a list of (text, quoted) tokens and nested statement
    lists: ``zone "x" { type primary; file "x.zone"; };`` gives
    ``[[("type", False), ("primary", False)], [("file", False), ("x.zone", True)]]``.
    """
    tokens = _conf_tokens(text)
    if not tokens or tokens[0] != ("zone", False):
        raise ValueError("named's zone configuration does not start with 'zone'")
    start = next((i for i, t in enumerate(tokens) if t == ("{", False)), None)
    if start is None:
        raise ValueError("named's zone configuration has no '{'")
    statements, _ = _conf_statements(tokens, start + 1)
    return statements


def shown_option(statements, name):
    """The first value token of option ``name`` (e.g. ``file``, ``type``), or None."""
    for statement in statements:
        if statement[0] == (name, False) and len(statement) > 1 and isinstance(statement[1], tuple):
            return statement[1][0]
    return None


def shown_list(statements, name):
    """The entries of list option ``name`` (``allow-transfer``, ``also-notify``) as named
    shows them (``key "k"``, ``192.0.2.1``, ``192.0.2.2 port 5353``), or None."""
    for statement in statements:
        if statement[0] == (name, False) and isinstance(statement[-1], list):
            return tuple(_host_entry(_render_statement(e)) for e in statement[-1] if e)
    return None


def _host_entry(entry):
    """An entry as bindcar writes it: named shows an address as a network
    (``192.0.2.1/32``) and quotes its words (``"none"``); a nest, entry by entry."""
    if is_group(entry):                 # group_entries reads each entry of it so
        return secondaries_group(group_entries(entry))
    if entry in ('"any"', '"none"', '"localhost"', '"localnets"'):
        return entry.strip('"')
    try:
        network = ipaddress.ip_network(entry)
    except ValueError:
        return entry
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return entry


def group_entries(entry):
    """The entries inside a nest, ``{ a; b; }`` -> ("a", "b")."""
    inner = entry.strip().removeprefix("{").removesuffix("}")
    return tuple(_host_entry(e.strip()) for e in inner.split(";") if e.strip())


def acl_admits(entries, address, key=None):
    """Whether an address-match list lets ``address`` (signing with ``key``, or not) in,
    read as named reads it: the first entry that matches decides, ``!`` negates, and a
    nest counts only where it matches.  None when an entry bindcar cannot judge comes
    first (a named ACL, localnets)."""
    for entry in entries:
        negated, entry = entry.startswith("!"), entry.lstrip("! ")
        if entry == "any":
            return not negated
        if entry == "none":
            return negated
        if is_group(entry):             # a nest: a negative match inside is no match
            matched = acl_admits(group_entries(entry), address, key)
            if matched is None:
                return None
        elif entry.startswith("key "):
            matched = key is not None and entry[4:].strip('"').lower() == key.lower()
        elif entry == "localhost":
            matched = address.is_loopback
        else:
            try:
                matched = address in ipaddress.ip_network(entry, strict=False)
            except ValueError:
                return None
        if matched:
            return not negated
    return False


def _render_statement(statement):
    parts = []
    for item in statement:
        if isinstance(item, list):
            parts.append("{ " + "".join(_render_statement(s) + "; " for s in item) + "}")
        elif item[1]:
            parts.append('"' + item[0].replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(item[0])
    return " ".join(parts)


def patch_zone_clause(statements, update):
    """named's clause of a zone with the lists of ``update`` replaced, all else kept.

    ``allow-update`` keeps its ``key`` entries: PATCH sets the addresses
    allowed to update, while the TSIG key given at creation stays; and an
    explicit ``allow-transfer`` gets those keys (``transfer_entries``).
    """
    kept, lists = [], {}
    replaced = {"also-notify": update.also_notify, "allow-transfer": update.allow_transfer,
                "allow-update": update.allow_update}
    for statement in statements:
        option = statement[0][0] if isinstance(statement[0], tuple) else None
        plain_list = len(statement) == 2 and isinstance(statement[1], list)
        # A list the PATCH replaces goes; allow-transfer and allow-update are re-rendered
        # below (the update keys); also-notify with a port (not a plain list) stays as is.
        if option in replaced and (replaced[option] is not None or
                                   (option != "also-notify" and plain_list)):
            if isinstance(statement[-1], list):
                lists[option] = tuple(_render_statement(e) for e in statement[-1] if e)
            continue
        kept.append(_render_statement(statement) + ";")
    keys = tuple(e for e in lists.get("allow-update", ()) if e.startswith("key "))
    if update.allow_transfer is not None:
        lists["allow-transfer"] = update.allow_transfer
    if update.allow_update is not None:
        lists["allow-update"] = _unique(keys + update.allow_update)
    if update.also_notify:
        kept.append(f"also-notify {_block(update.also_notify)};")
    if "allow-transfer" in lists:
        entries = transfer_entries(lists["allow-transfer"], lists.get("allow-update", ()))
        kept.append(f"allow-transfer {_block(entries)};")
    if lists.get("allow-update"):
        kept.append(f"allow-update {_block(lists['allow-update'])};")
    return _clause(kept, "body")


# ---------------------------------------------------------------- files

def zone_file_name(zone_name):
    """``<zone>.zone``, or for a zone name too long for that to stay a file name once
    named adds ``.signed.jnl`` (255 bytes at most), or holding RFC 2317's ``/``, its
    first 200 characters (``/`` as ``_``), ``+`` (which no zone name holds, so no other
    zone's file can be named so), a hash of the whole name, and ``.zone``.

    >>> zone_file_name("Example.COM")
    'example.com.zone'
    >>> len(zone_file_name("a." * 125 + "com")) <= MAX_FILE_NAME
    True
    """
    name = parse_zone_name(zone_name)
    if len(name) + len(ZONE_SUFFIX) <= MAX_FILE_NAME and "/" not in name:
        return name + ZONE_SUFFIX
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    short = name[:200].replace("/", "_")                # RFC 2317's '/' is no directory
    return f"{short}+{digest}{ZONE_SUFFIX}"             # '+': no zone's own file name


def zone_file_path(directory, zone_name):
    """``<directory>/<zone file name>``; refuses any path that resolves outside it."""
    name = parse_zone_name(zone_name)
    base = os.path.realpath(directory)
    path = os.path.join(base, zone_file_name(name))
    if os.path.dirname(os.path.realpath(path)) != base:
        raise ValueError(f"zone file for {name} would resolve outside {base}")
    return path


def fsync_directory(directory):
    """fsync ``directory``: the names made or removed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_zone_file(path, text, *, replace=False, sync_dir=True):
    """Write ``text`` to ``path`` atomically, mode 0644.

    A temporary file in the same directory is written and fsync'd, then
    renamed over ``path`` (``replace=True``) or hard-linked to it, which
    fails with FileExistsError rather than touch an existing file: a name
    that survives a crash always has all of its data.  The directory is
    fsync'd so the name survives too; ``sync_dir=False`` leaves that to
    ``fsync_directory``, for a caller that overlaps it with other work and
    acknowledges nothing before it is done.
    """
    directory = os.path.dirname(path)
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        try:
            os.fchmod(fd, 0o644)                       # whatever the umask
            data = text.encode("ascii")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.rename(temp, path)
        else:
            os.link(temp, path)
            os.unlink(temp)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_directory(directory)


def marked_zone(path):
    """The zone named by the MARKER line that starts ``path``, or None: None for a file
    bindcar did not write (or one named has since rewritten in its own format)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, len(MARKER) + MAX_NAME + 1)
    finally:
        os.close(fd)
    line = head.split(b"\n", 1)[0].decode("ascii", "replace")
    if not line.startswith(MARKER):
        return None
    try:
        return parse_zone_name(line[len(MARKER):])
    except ZoneError:
        return None


def zone_file_names(zone_name):
    """The files a zone may have in the directory: the file, journals, signed copies.

    DNSSEC keys live in named's key-directory and are left alone, as
    ``rndc delzone -clean`` leaves them.
    """
    base = zone_file_name(zone_name)
    return [base, base + ".jnl", base + ".jbk", base + ".signed", base + ".signed.jnl"]


def _remove(directory, names):
    """Unlink ``names`` in ``directory`` (missing ones are fine); fsync it; return the removed."""
    removed = []
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except FileNotFoundError:
            pass
    if removed:
        fsync_directory(directory)
    return removed


def mark_deleting(directory, zone_name):
    """Note, in ``directory``, that a delete of ``zone_name`` has begun: a crash before
    ``unmark_deleting`` leaves the note, and the next start finishes the delete.  The
    zone file's own MARKER cannot say it: named rewrites a dynamic zone's file in its own
    format (15 minutes after an update, and when it stops).  The note holds the MARKER
    line, and is renamed into place whole (a crash mid-write leaves a temporary file
    the next start clears); it is not fsync'd: it is for a crash of the process (after
    a power loss the zone file's marker, when named left it, is all there is)."""
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        try:
            os.write(fd, f"{MARKER}{zone_name}\n".encode())
        finally:
            os.close(fd)
        os.rename(temp, _deleting_path(directory, zone_name))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def unmark_deleting(directory, zone_name):
    """The note of ``mark_deleting`` gone (a missing one is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_deleting_path(directory, zone_name))


def zones_being_deleted(directory):
    """The zones whose delete a note says was begun and not finished."""
    notes = [os.path.join(directory, name) for name in os.listdir(directory)
             if name.startswith(DELETING_PREFIX)]
    return sorted(zone for zone in map(marked_zone, notes) if zone)


def _deleting_path(directory, zone_name):
    digest = hashlib.sha1(zone_name.encode()).hexdigest()
    return os.path.join(directory, DELETING_PREFIX + digest)


def remove_zone_files(directory, zone_name):
    """Remove a zone's journal, signed copies and file, the file last: a crash half-way
    leaves the file that says whose they are (bindcar's marker), never a journal alone
    that no create may replace; return the names removed."""
    return _remove(directory, zone_file_names(zone_name)[::-1])


def remove_stale_temp_files(directory):
    """Remove temporary files a crash left behind; return their names."""
    return sorted(_remove(directory, [name for name in os.listdir(directory)
                                      if name.startswith(TEMP_PREFIX)
                                      and name.endswith(TEMP_SUFFIX)]))
