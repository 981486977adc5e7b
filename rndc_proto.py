"""rndc_proto: BIND 9's control channel (rndc) in the standard library.

One screen per concern: the wire encoding, decoding, signing and verifying,
the client that keeps one connection open to named, rndc.conf parsing, and
a small ``rndc`` command line.  Section numbers (§n) point into
``rndc-protocol.md``, which explains every quirk of named 9.18 used here.

    >>> client = RndcClient("127.0.0.1", 953, "hmac-sha256", secret="c2VjcmV0")
    >>> print(client.call("status"))          # doctest: +SKIP
    version: BIND 9.18.49-1~deb12u3-Debian ...

Imports nothing of bindcar's, so it can be read, tested and reused alone.
"""

import base64
import collections
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading
import time


DEFAULT_PORT = 953
DEFAULT_TIMEOUT = 10.0
MAX_REQUEST = 32768         # named refuses a longer length field (§2, "out of range")
MAX_REPLY = 1 << 20         # what ISC rndc accepts from named (§2)
MAX_DEPTH = 10              # ISCCC_MAXDEPTH: a value and a table each cost one (§2.1)
EXPIRY = 60                 # _exp = _tim + 60, as rndc sends (§5)
IDLE_REOPEN = 25.0          # named drops an idle control connection after 30 s (§1)
OWED_WAIT = 30.0            # seconds a command's late reply is waited for before giving up

# Wire types (§2.1).  Tag 0 (STRING) exists in the headers but named rejects it.
BINARY, TABLE, LIST = 1, 2, 3
_LEN = struct.Struct("!I")              # frame length, version, value length
_VALUE_HEAD = struct.Struct("!BI")      # type tag, payload length

# name -> (hash, the algorithm byte of an hsha field; None for hmd5) (§4)
ALGORITHMS = {
    "hmac-md5": (hashlib.md5, None),
    "hmac-sha1": (hashlib.sha1, 161),
    "hmac-sha224": (hashlib.sha224, 162),
    "hmac-sha256": (hashlib.sha256, 163),
    "hmac-sha384": (hashlib.sha384, 164),
    "hmac-sha512": (hashlib.sha512, 165),
}


class RndcError(Exception):
    """Base class of every error this module raises about named."""


class RndcConnectionError(RndcError):
    """named could not be reached, or closed the channel without a valid reply.
    ``sent`` is False when the command never left: named cannot have run it."""

    sent = True


class RndcUnanswered(RndcConnectionError):
    """named read nothing back within the timeout: it may still run the command."""


class RndcCommandError(RndcError):
    """named ran the command and answered with a non-zero result.

    ``result`` is named's numeric code as text (it differs between BIND
    versions, §7); ``err`` is its name for it, such as ``"not found"``;
    ``text`` is whatever the command wrote, often empty.
    """

    def __init__(self, command, result, err, text):
        self.command, self.result, self.err, self.text = command, result, err, text
        super().__init__(f"'{command}' failed: {err}")


class _NothingYet(Exception):
    """Not a byte of a reply within the timeout (internal to RndcClient)."""


class RndcConfigError(RndcError, ValueError):
    """An rndc.conf or key file is unreadable or malformed; names file and line."""


def normalize_algorithm(name):
    """``"sha256"``, ``"HMAC-SHA256"`` -> ``"hmac-sha256"``; ValueError if unknown."""
    algorithm = name.strip().lower()
    if not algorithm.startswith("hmac-"):
        algorithm = "hmac-" + algorithm
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown rndc algorithm {name!r}: use one of "
                         + ", ".join(ALGORITHMS))
    return algorithm


# ---------------------------------------------------------------- encoding (§2)

def encode_value(value):
    """A Python value as one wire value: bytes/str -> BINARY, dict -> TABLE, list -> LIST."""
    if isinstance(value, dict):
        tag, payload = TABLE, encode_table(value)
    elif isinstance(value, list):
        tag, payload = LIST, b"".join(encode_value(v) for v in value)
    elif isinstance(value, str):
        tag, payload = BINARY, value.encode("ascii")
    else:
        tag, payload = BINARY, bytes(value)
    return _VALUE_HEAD.pack(tag, len(payload)) + payload


def encode_table(table):
    """The contents of a table: key length (1 byte), key, value; in dict order."""
    out = []
    for key, value in table.items():
        name = key.encode("ascii")
        out.append(bytes((len(name),)) + name + encode_value(value))
    return b"".join(out)


# ---------------------------------------------------------------- decoding (§2)

def _decode_value(buf, pos, end, depth):
    """Decode the value at ``buf[pos:end]``; return (value, position after it)."""
    if depth > MAX_DEPTH:
        raise ValueError("values nested too deep")
    if end - pos < _VALUE_HEAD.size:
        raise ValueError("truncated value header")
    tag, size = _VALUE_HEAD.unpack_from(buf, pos)
    pos += _VALUE_HEAD.size
    if size > end - pos:
        raise ValueError("value longer than its container")
    stop = pos + size
    if tag == BINARY:
        return bytes(buf[pos:stop]), stop
    if tag == TABLE:
        return _decode_table(buf, pos, stop, depth + 1), stop
    if tag == LIST:
        items = []
        while pos < stop:
            item, pos = _decode_value(buf, pos, stop, depth + 1)
            items.append(item)
        return items, stop
    raise ValueError(f"unknown value type {tag}")   # including 0, which named rejects


def _decode_table(buf, pos, end, depth):
    table = {}
    while pos < end:
        key, pos = _decode_key(buf, pos, end)
        table[key], pos = _decode_value(buf, pos, end, depth + 1)   # a repeat wins, as in named
    return table


def _decode_key(buf, pos, end):
    size = buf[pos]
    if size > end - pos - 1:
        raise ValueError("truncated key")
    return bytes(buf[pos + 1:pos + 1 + size]).decode("ascii", "replace"), pos + 1 + size


def decode_table(data):
    """Decode the contents of a table (no type tag or length around it)."""
    return _decode_table(memoryview(data), 0, len(data), 1)


# ---------------------------------------------------------------- signing (§4)

def signature_field(signed, algorithm, secret):
    """The ``hmd5``/``hsha`` field that named expects over the bytes ``signed``.

    hmac-md5: the padded base64 of the digest cut to 22 characters.  The SHA
    family: the algorithm byte, then the padded base64 NUL-filled to 88 bytes.
    """
    hashfn, code = ALGORITHMS[algorithm]
    b64 = base64.b64encode(hmac.new(secret, signed, hashfn).digest())
    if code is None:
        return b64[:22]
    return bytes((code,)) + b64.ljust(88, b"\0")


def _auth_entry(field, algorithm):
    name = "hmd5" if ALGORITHMS[algorithm][1] is None else "hsha"
    return encode_table({"_auth": {name: field}})


def encode_message(ctrl, data, algorithm, secret):
    """A whole signed frame: length, version 1, ``_auth``, ``_ctrl``, ``_data`` (§3).

    ``secret`` is the decoded key (bytes).  The signature covers the encoded
    ``_ctrl`` and ``_data`` entries and nothing before them.
    """
    signed = encode_table({"_ctrl": ctrl, "_data": data})
    body = _LEN.pack(1) + _auth_entry(signature_field(signed, algorithm, secret),
                                      algorithm) + signed
    return _LEN.pack(len(body)) + body


def decode_message(body, algorithm=None, secret=None):
    """Decode a frame body (what follows the length) and verify its signature.

    The HMAC is computed over the received bytes after the ``_auth`` entry,
    never over a re-encoding, and compared in constant time.  With
    ``secret=None`` the signature is not checked.  Raises ValueError.
    """
    buf = memoryview(body)
    if len(buf) < 4 or _LEN.unpack_from(buf, 0)[0] != 1:
        raise ValueError("not a version 1 control message")
    pos = 4
    key, pos = _decode_key(buf, pos, len(buf))
    if key != "_auth":
        raise ValueError("the first entry is not _auth")
    auth, pos = _decode_value(buf, pos, len(buf), 1)
    message = {"_auth": auth}
    message.update(_decode_table(buf, pos, len(buf), 1))
    if secret is not None:
        name = "hmd5" if ALGORITHMS[algorithm][1] is None else "hsha"
        got = auth.get(name) if isinstance(auth, dict) else None
        want = signature_field(buf[pos:], algorithm, secret)
        if not isinstance(got, bytes) or not hmac.compare_digest(got, want):
            raise ValueError("signature does not verify")
    return message


def _text(table, key):
    value = table.get(key)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


# ---------------------------------------------------------------- the client (§1, §5, §6)

def check_command(command):
    """Refuse a command string that would crash or confuse named (§9, §12).

    Leading whitespace before ``addzone``/``modzone`` aborts named 9.18;
    control characters and non-ASCII text have no place in a command.
    """
    if not isinstance(command, str) or not command:
        raise ValueError("the rndc command is empty")
    if command != command.strip(" "):
        raise ValueError("the rndc command has leading or trailing whitespace")
    for ch in command:
        if ch < " " or ch == "\x7f":
            raise ValueError(f"the rndc command contains control character {ch!r}")
        if ch > "\x7f":
            raise ValueError("the rndc command contains non-ASCII text")


class RndcClient:
    """A client for named's control channel over one kept-open connection.

    The connection is opened on first use, buys its nonce with one ``null``
    (which named never executes, §6), and then carries every command, one
    at a time (§1: named 9.18 does not pipeline).  Each message gets a fresh
    ``_ser`` (random start, +1) and ``_tim``, so named's replay cache (§5)
    never sees a pair twice.  Thread-safe.

    A command is never sent twice: a call is retried on a new connection
    only when named cannot have seen it (the connection was found closed
    before sending).  Otherwise the failure is raised.

    A command named has not answered within the timeout is *owed*: a named
    that is stopped or busy still holds it, and will run it when it goes on.
    The connection is kept, and the next call first reads that late reply
    (``late(verb, result, err)`` is told of it) before sending anything:
    whatever is sent next reaches named after the owed command has run, never
    before it on another connection.  Past OWED_WAIT the connection is given
    up, and the owed command's outcome stays unknown.
    """

    def __init__(self, host="127.0.0.1", port=DEFAULT_PORT, algorithm="hmac-sha256",
                 secret="", timeout=DEFAULT_TIMEOUT):
        self.host, self.port, self.timeout = host, int(port), timeout
        self.algorithm = normalize_algorithm(algorithm)
        try:
            self._key = base64.b64decode(secret, validate=True)
        except (ValueError, TypeError):
            raise ValueError("the rndc secret is not valid base64") from None
        if not self._key:
            raise ValueError("the rndc secret is empty")
        self._lock = threading.Lock()
        self._sock = None
        self._nonce = None
        self._serial = int.from_bytes(os.urandom(4), "big")
        self._last_used = 0.0
        self._owed = None                   # (verb, give up at) of an unanswered command
        self.connections = 0                # connections opened: a new one may be a new named
        self.late = None                    # called with (verb, result, err) of a late reply

    def __repr__(self):
        return f"RndcClient({self.host!r}, {self.port}, {self.algorithm!r})"

    def call(self, command, meanwhile=None):
        """Run one command; return named's ``text`` ('' when there is none).

        ``meanwhile``, if given, is called once the command is sent and before
        its reply is read: work that can overlap named's (an fsync while named
        adds a zone).  Should it raise, the connection is dropped unread.

        Raises RndcCommandError when named answers with a non-zero result,
        RndcConnectionError when it cannot be reached or gives no valid
        reply (RndcUnanswered: none yet, and it may still run the command),
        ValueError for a command that must not be sent.
        """
        check_command(command)
        verb = command.split(" ", 1)[0]
        with self._lock:
            try:
                self._ensure_connection()
            except RndcConnectionError as e:
                e.sent = False
                raise
            frame = self._frame(command)
            if len(frame) - 4 > MAX_REQUEST:
                raise ValueError(f"the rndc command is {len(frame) - 4} bytes "
                                 f"encoded; named accepts at most {MAX_REQUEST}")
            try:
                self._sock.sendall(frame)
                if meanwhile is not None:
                    meanwhile()
                reply = self._read_reply(verb)
            except RndcUnanswered:
                self._owed = (verb, time.monotonic() + OWED_WAIT)
                raise
            except BaseException:
                self._drop()
                raise
            self._last_used = time.monotonic()
        data = reply.get("_data", {})
        result = _text(data, "result")
        if result != "0":
            raise RndcCommandError(verb, result, _text(data, "err") or "failure",
                                   _text(data, "text"))
        return _text(data, "text")

    def close(self):
        """Close the connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- connection life cycle

    def _ensure_connection(self):
        """Have an open, handshaken connection, replacing one named has closed.

        named closes idle connections after 30 s and all of them when it
        restarts; the closed socket reads as EOF.  Such a connection is
        replaced before anything is sent on it.  An owed reply is read first.
        """
        if self._owed is not None:
            self._read_owed()
        if self._sock is not None and (
                time.monotonic() - self._last_used > IDLE_REOPEN or self._peer_closed()):
            self._drop()
        if self._sock is None:
            self._connect()

    def _peer_closed(self):
        # A peek, not select(): select() cannot take a descriptor past 1023.  Non-blocking
        # for it, or CPython would first wait the socket's timeout for data.
        self._sock.setblocking(False)
        try:
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self._sock.settimeout(self.timeout)

    def _read_owed(self):
        """The late reply to the owed command; RndcUnanswered while named is still silent
        (and OWED_WAIT has not passed), the connection replaced when it closed."""
        verb, give_up = self._owed
        try:
            reply = self._read_reply(verb)
        except RndcUnanswered:
            if time.monotonic() < give_up:
                raise RndcUnanswered(f"named at {self.host}:{self.port} has still not "
                                     f"answered '{verb}'; nothing more is sent until it "
                                     "does") from None
            self._drop()                        # silent too long: its outcome stays unknown
            return
        except RndcConnectionError:
            self._drop()                        # closed: it can run nothing more it was sent
            return
        self._owed, self._last_used = None, time.monotonic()
        if self.late is not None:
            data = reply.get("_data", {})
            self.late(verb, _text(data, "result"), _text(data, "err"))

    def _connect(self):
        where = f"{self.host}:{self.port}"
        try:
            # An ASCII host as bytes: for a str, getaddrinfo loads the idna codec (and
            # unicodedata, 0.3 MB) only to pass "127.0.0.1" through.
            host = self.host.encode() if self.host.isascii() else self.host
            sock = socket.create_connection((host, self.port), self.timeout)
        except ConnectionRefusedError:
            raise RndcConnectionError(
                f"named's control channel at {where} refused the connection: is named "
                "running, and does its controls clause listen on this address and port?"
            ) from None
        except socket.timeout:
            raise RndcConnectionError(
                f"timed out after {self.timeout:g} s connecting to named's control "
                f"channel at {where}") from None
        except OSError as e:
            raise RndcConnectionError(
                f"cannot connect to named's control channel at {where}: "
                f"{e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._nonce = sock, None
        try:
            sock.sendall(self._frame("null"))
            reply = self._read_reply("null", handshake=True)
        except BaseException:
            self._drop()
            raise
        nonce = reply.get("_ctrl", {}).get("_nonce")
        if not isinstance(nonce, bytes) or not nonce.isdigit():
            self._drop()
            raise RndcConnectionError(f"named at {where} sent no nonce in its handshake")
        self._nonce = nonce
        self._last_used = time.monotonic()
        self.connections += 1

    def _drop(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._nonce, self._owed = None, None, None

    # -- one exchange

    def _frame(self, command):
        self._serial = (self._serial + 1) & 0xFFFFFFFF
        now = int(time.time())
        ctrl = {"_ser": str(self._serial), "_tim": str(now), "_exp": str(now + EXPIRY)}
        if self._nonce is not None:
            ctrl["_nonce"] = self._nonce
        return encode_message(ctrl, {"type": command}, self.algorithm, self._key)

    def _read_reply(self, verb, handshake=False):
        where = f"{self.host}:{self.port}"
        try:
            head = self._recv_exact(4, first=True)
            if head is None:
                if handshake:
                    raise RndcConnectionError(
                        f"named at {where} closed the control connection without a reply: "
                        "check that the key's secret and algorithm match one in named's "
                        "controls clause, that this address is allowed there, and that "
                        "the clocks agree within 300 s")
                raise RndcConnectionError(
                    f"named at {where} closed the connection without answering '{verb}' "
                    "(did named stop or restart? the command may or may not have run)")
            (length,) = _LEN.unpack(head)
            if not 4 <= length <= MAX_REPLY:
                raise RndcConnectionError(f"named at {where} sent a frame of {length} bytes")
            body = self._recv_exact(length)
            if body is None:
                raise RndcConnectionError(f"named at {where} closed the connection "
                                          f"in the middle of its reply to '{verb}'")
        except _NothingYet:
            raise RndcUnanswered(f"no reply from named at {where} to '{verb}' "
                                 f"within {self.timeout:g} s") from None
        except socket.timeout:
            raise RndcConnectionError(f"named at {where} stopped in the middle of its "
                                      f"reply to '{verb}'") from None
        except OSError as e:
            raise RndcConnectionError(f"control connection to named at {where} failed "
                                      f"during '{verb}': {e.strerror or e}") from None
        try:
            reply = decode_message(body, self.algorithm, self._key)
        except ValueError as e:
            raise RndcConnectionError(f"invalid reply from named at {where} to "
                                      f"'{verb}': {e}") from None
        ctrl = reply.get("_ctrl", {})
        if (not isinstance(ctrl, dict) or ctrl.get("_rpl") != b"1"
                or ctrl.get("_ser") != str(self._serial).encode()
                or (self._nonce is not None and ctrl.get("_nonce") != self._nonce)):
            raise RndcConnectionError(f"reply from named at {where} to '{verb}' "
                                      "does not answer the request sent")
        if not isinstance(reply.get("_data"), dict):
            raise RndcConnectionError(f"reply from named at {where} has no _data table")
        return reply

    def _recv_exact(self, size, first=False):
        """Read exactly ``size`` bytes; None on a clean EOF before the first byte;
        _NothingYet when the ``first`` read of a reply times out with nothing read."""
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            try:
                n = self._sock.recv_into(view[got:])
            except socket.timeout:
                if first and got == 0:
                    raise _NothingYet from None
                raise
            if n == 0:
                if got == 0:
                    return None
                raise OSError(0, "connection closed mid-frame")
            got += n
        return bytes(buf)


# ---------------------------------------------------------------- rndc.conf

class RndcConfig(collections.namedtuple("RndcConfig",
                                         "host port key_name algorithm secret")):
    """Where named's control channel is and the key to sign with (``secret``: base64,
    as in the key clause; never in the repr)."""

    __slots__ = ()

    def __repr__(self):
        return (f"RndcConfig(host={self.host!r}, port={self.port!r}, "
                f"key_name={self.key_name!r}, algorithm={self.algorithm!r})")

    def client(self, timeout=DEFAULT_TIMEOUT):
        """An RndcClient for this configuration."""
        return RndcClient(self.host, self.port, self.algorithm, self.secret, timeout)


class _Token(str):
    """A token of named.conf syntax, knowing where it came from."""
    quoted = False
    path = ""
    line = 0


_SPECIAL = "{};"


def _tokenize(text, path):
    """Split named.conf-style text into tokens; comments ``//``, ``#``, ``/* */``."""
    tokens, i, line, n = [], 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#" or text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise RndcConfigError(f"{path}:{line}: unterminated /* comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif ch == '"':
            start_line, value, i = line, [], i + 1
            while True:
                if i >= n:
                    raise RndcConfigError(f"{path}:{start_line}: unterminated string")
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                    continue
                if text[i] == '"':
                    i += 1
                    break
                if text[i] == "\n":
                    line += 1
                value.append(text[i])
                i += 1
            tokens.append(_token("".join(value), path, start_line, quoted=True))
        elif ch in _SPECIAL:
            tokens.append(_token(ch, path, line))
            i += 1
        else:
            start = i
            while (i < n and not text[i].isspace() and text[i] not in _SPECIAL
                   and text[i] != '"' and text[i] != "#" and not text.startswith("//", i)
                   and not text.startswith("/*", i)):
                i += 1
            tokens.append(_token(text[start:i], path, line))
    return tokens


def _token(value, path, line, quoted=False):
    token = _Token(value)
    token.path, token.line, token.quoted = path, line, quoted
    return token


def _warn(text):
    """A warning, by default to the logger ``rndc_proto``; imported only when there is
    one to give (the daemon passes a ``warn`` of its own)."""
    import logging
    logging.getLogger("rndc_proto").warning(text)


def _read_tokens(path, seen=(), where=None, skip_unreadable=False, warn=_warn):
    """Tokens of ``path`` with every ``include "file";`` expanded in place; with
    ``skip_unreadable``, an included file that cannot be read is left out, with a
    warning (bindy's rndc.conf includes a key file bindcar may not need)."""
    real = os.path.realpath(path)
    if real in seen:
        raise RndcConfigError(f"{where}: {path} includes itself")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
            mode = os.fstat(f.fileno()).st_mode
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise RndcConfigError(f"{where}: cannot read {path}: {reason}" if where
                              else f"{path}: cannot read: {reason}") from None
    tokens, out = _tokenize(text, path), []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "include" and not tok.quoted:
            if i + 2 >= len(tokens) or tokens[i + 2] != ";" or not tokens[i + 1].quoted:
                raise RndcConfigError(f"{path}:{tok.line}: expected include \"file\";")
            name = tokens[i + 1]
            target = name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name)
            try:
                out.extend(_read_tokens(target, seen + (real,), f"{path}:{tok.line}",
                                        skip_unreadable, warn))
            except RndcConfigError as e:
                if not skip_unreadable:
                    raise
                warn(f"{e}; left out")
            i += 3
            continue
        out.append(tok)
        i += 1
    if mode & 0o004 and any(t == "secret" and not t.quoted for t in tokens):
        warn(f"{path} holds an rndc secret and is readable by every user; chmod o-r it")
    return out


def _parse_statements(tokens, pos=0, depth=0):
    """``word ... ;`` or ``word ... { statements } ;`` -> [(words, block or None)]."""
    statements = []
    while pos < len(tokens):
        tok = tokens[pos]
        if tok == "}" and not tok.quoted:
            if depth == 0:
                raise RndcConfigError(f"{tok.path}:{tok.line}: unexpected '}}'")
            return statements, pos
        words, block = [], None
        while True:
            if pos >= len(tokens):
                last = tokens[-1]
                raise RndcConfigError(f"{last.path}:{last.line}: missing ';' at end of file")
            tok = tokens[pos]
            if tok.quoted or tok not in _SPECIAL:
                if block is not None:
                    raise RndcConfigError(f"{tok.path}:{tok.line}: missing ';' after '}}'")
                words.append(tok)
                pos += 1
            elif tok == "{":
                if block is not None:
                    raise RndcConfigError(f"{tok.path}:{tok.line}: unexpected '{{'")
                block, pos = _parse_statements(tokens, pos + 1, depth + 1)
                if pos >= len(tokens):
                    raise RndcConfigError(f"{tok.path}:{tok.line}: '{{' is never closed")
                pos += 1
            elif tok == ";":
                pos += 1
                break
            else:
                raise RndcConfigError(f"{tok.path}:{tok.line}: missing ';' before '}}'")
        if words or block is not None:
            if not words:
                raise RndcConfigError(f"{tok.path}:{tok.line}: a block without a name")
            statements.append((words, block))
    if depth:
        last = tokens[-1]
        raise RndcConfigError(f"{last.path}:{last.line}: missing '}}' at end of file")
    return statements, pos


def _options(block):
    """A block's ``name value;`` statements as a dict; longer ones are not needed."""
    return {words[0]: words[1] for words, sub in block if sub is None and len(words) == 2}


def load_config(path, server=None, port=None, key_name=None, need_key=True, warn=_warn):
    """Read an rndc.conf, or a bare key file as ``rndc-confgen -a`` writes it.

    The server, port and key are chosen as ISC rndc does: the arguments
    (like ``-s``, ``-p``, ``-y``) first, then the ``server`` block for that
    server, then ``options { default-server; default-port; default-key; }``;
    a file with a single key and no options means that key on 127.0.0.1.
    With ``need_key=False`` (the secret comes from elsewhere) a file that
    names no usable key still gives its server and port, and the key's name if it
    names one, with ``algorithm`` and ``secret`` None.  ``warn(text)`` is told what
    deserves a warning (an include left out, a secret every user may read).  Raises
    RndcConfigError naming file and line.
    """
    tokens = _read_tokens(path, skip_unreadable=not need_key, warn=warn)
    if not tokens and need_key:
        raise RndcConfigError(f"{path}: no key clause found")
    statements, _ = _parse_statements(tokens)
    keys, servers, options = {}, {}, {}
    for words, block in statements:
        kind, where = words[0], f"{words[0].path}:{words[0].line}"
        if kind in ("key", "server") and (len(words) != 2 or block is None):
            raise RndcConfigError(f"{where}: expected {kind} \"name\" {{ ... }};")
        if kind == "key":
            keys[words[1]] = (_options(block), where)
        elif kind == "server":
            servers[words[1]] = _options(block)
        elif kind == "options":
            options = _options(block or [])
    host = server or options.get("default-server") or "127.0.0.1"
    block = servers.get(host, {})
    chosen_port = port or block.get("port") or options.get("default-port") or DEFAULT_PORT
    try:
        chosen_port = int(chosen_port)
        if not 0 < chosen_port < 65536:
            raise ValueError
    except ValueError:
        raise RndcConfigError(f"{path}: port {chosen_port!r} is not a port number") from None
    name = key_name or block.get("key") or options.get("default-key")
    if name is None and len(keys) == 1:
        name = next(iter(keys))
    if not need_key and name not in keys:       # the key's name still says which it is
        return RndcConfig(str(host), chosen_port, name and str(name), None, None)
    if name is None:
        raise RndcConfigError(f"{path}: no default-key in options and "
                              f"{len(keys)} keys to choose from")
    if name not in keys:
        raise RndcConfigError(f"{path}: key {name!r} is not defined")
    try:
        algorithm, secret = _key(name, *keys[name])
    except RndcConfigError:
        if need_key:
            raise
        return RndcConfig(str(host), chosen_port, str(name), None, None)
    return RndcConfig(str(host), chosen_port, str(name), algorithm, secret)


def _key(name, key, where):
    """(algorithm, secret) of a key clause, checked."""
    if "algorithm" not in key or "secret" not in key:
        raise RndcConfigError(f"{where}: key {name!r} needs an algorithm and a secret")
    try:
        algorithm = normalize_algorithm(key["algorithm"])
        base64.b64decode(key["secret"], validate=True)
    except ValueError as e:
        raise RndcConfigError(f"{where}: key {name!r}: "
                              f"{e if 'algorithm' in str(e) else 'secret is not base64'}") from None
    return algorithm, str(key["secret"])


# ---------------------------------------------------------------- command line

DEFAULT_CONF = "/etc/bind/rndc.conf"
DEFAULT_KEY = "/etc/bind/rndc.key"


def main(argv=None):
    """``python3 rndc_proto.py [-c conf] [-k key] [-s server] [-p port] [-y key] CMD ...``"""
    import argparse                     # the command line's alone: the daemon never needs it
    parser = argparse.ArgumentParser(
        prog="rndc_proto.py", description="Send one command to named's control channel, "
        "like ISC rndc.")
    parser.add_argument("-c", metavar="config-file", help=f"default {DEFAULT_CONF}")
    parser.add_argument("-k", metavar="key-file", help=f"default {DEFAULT_KEY}")
    parser.add_argument("-s", metavar="server")
    parser.add_argument("-p", metavar="port", type=int)
    parser.add_argument("-y", metavar="key-name")
    parser.add_argument("-t", metavar="timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_usage(sys.stderr)
        return 1
    path = args.c or args.k or (DEFAULT_CONF if os.path.exists(DEFAULT_CONF) else DEFAULT_KEY)
    command = " ".join(args.command)            # as rndc does: no quoting (§8)
    verb = args.command[0]
    try:
        config = load_config(path, server=args.s, port=args.p, key_name=args.y)
        text = config.client(timeout=args.t).call(command)
    except RndcCommandError as e:
        print(f"rndc: '{verb}' failed: {e.err}", file=sys.stderr)
        if e.text:
            print(e.text, file=sys.stderr)
        return 1
    except (RndcError, ValueError) as e:
        print(f"rndc: {e}", file=sys.stderr)
        return 1
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
