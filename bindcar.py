"""bindcar: an HTTP API that manages BIND9 zones through named's control channel, their
records through DNS UPDATE, and a catalog zone for BIND secondaries.

    $ BIND_API_TOKEN_FILE=/etc/bindcar/api-token python3 bindcar.py
    $ curl -H "Authorization: Bearer $(cat /etc/bindcar/api-token)" localhost:8080/api/v1/zones

One process, one ``ThreadingHTTPServer``, one kept-open connection to each of named's
channels (RNDC, DNS), and one lock (``Named.lock``) that serialises every change to
named or the zone directory.  Text for named and zone files is made in ``zonefile``;
the wire to named is ``rndc_proto`` and ``dns_proto``.  The sections, in the order a
request travels:

    configuration   SETTINGS, the environment read once into a Config
    logging/metrics Log (JSON lines), Metrics (Prometheus text)
    auth            TokenReviewer, RateLimiter, Gate: Host check, token, rate limits
    errors          ApiError, Response, Request: one error type, rendered in one place
    routes          App: the route table, dispatch(), the open endpoints
    named           Named: every RNDC command, UPDATE, query and AXFR; named's refusals
    zones           Managed (which zones are bindcar's; every zone file written or
                    removed), Zones (create, read, PATCH, delete, the RNDC actions),
                    Settler (a change named left unknown, finished when it answers)
    records         Serials (ETags, If-Match), Records: RFC 2136 UPDATEs and AXFR
                    listings
    dnssec, audit   Dnssec: keys and DS; Audit: the trail of changes (BIND_AUDIT_LOG)
    catalog         Catalog: RFC 9432 members kept equal to the primary zones
    scale-out       Roster, Secondaries, Alignment: the secondaries NOTIFYed and followed
    external-dns    Webhook, WebhookChanges: its webhook provider, on a loopback listener
    OpenAPI, HTTP   the API document; Handler reads a request and writes one answer,
                    Server admits connections and closes those silent too long
    start-up        main(): open_all (config, lock, scan, listen), announce, serve, stop
"""

import base64
import bisect
import collections
import contextlib
import errno
import fcntl
import hashlib
import hmac
import html
import http.client
import http.server
import ipaddress
import json
import math
import os
import re
import signal
import socket
import ssl
import stat
import sys
import threading
import time
import urllib.parse

import dns_proto
import rndc_proto
import zonefile

VERSION = "0.1.0"

MAX_BODY = 1 << 20              # bytes; a larger body is refused with 413 unread
SOCKET_TIMEOUT = 30.0           # seconds a client may stay silent mid-request or idle
HEAD_TIMEOUT = 10.0             # seconds from a request line to the end of its headers
MAX_CONNECTIONS = 256           # concurrent connections; past it, the longest waiting one goes
EVICT_WAIT = 1.0                # seconds a newcomer waits for an evicted connection's slot
READY_CACHE = 1.0               # seconds a /ready result is reused
RECONCILE_RETRY = 2.0           # seconds between tries to reach named at start
SETTLE_INTERVAL = 0.5           # seconds between tries to settle what named left unknown
DELETE_RECHECK = 60.0           # seconds a delete is checked again after named restarts
SHUTDOWN_POLL = 0.1             # seconds between checks for a stop request
REAP_INTERVAL = 1.0             # seconds between looks for connections silent too long
LOCK_FILE = ".bindcar.lock"
RNDC_CONF_PATHS = ("/etc/bind/rndc.conf", "/etc/rndc.conf", "/etc/bind/rndc.key")
CREDENTIAL_TOKEN = "api-token"    # files systemd's LoadCredential= puts in $CREDENTIALS_DIRECTORY
CREDENTIAL_RNDC = "rndc.key"
STOP_TIMEOUT = 10.0             # seconds in-flight requests get to finish on SIGTERM
MAX_RECORDS_PER_TYPE = 100      # named 9.18's max-records-per-type, for a SERVFAIL's reason
MAX_QUERY_FIELDS = 10           # parameters in one query string
PROPAGATION_TIMEOUT = 2.0       # seconds a secondary has to answer .../propagation
LOOK_TIMEOUT = 1.0              # seconds a secondary has to answer bindcar's own looks
CATALOG_SUFFIX = ".catalog"     # the catalog zone's file: not a ".zone", never a managed zone
DISK_LOW = 64 * 1024            # bytes free below which named's journal writes are failing

LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "off": 100}
PROBE_ROUTES = ("/health", "/api/v1/health", "/ready", "/api/v1/ready", "/metrics",
                "/healthz")
OPEN_ROUTES = PROBE_ROUTES + ("/api/v1/openapi.json", "/api/v1/docs")


# ---------------------------------------------------------------- configuration

class ConfigError(Exception):
    """A setting is wrong; the message says which and how to fix it."""


def _bool(text):
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _number(text, kind, low, high, what):
    """``text`` as a ``kind`` (int or float) in [low, high]; ValueError saying ``what``."""
    try:
        value = kind(text.strip())
    except ValueError:
        raise ValueError(f"must be {what}") from None
    if not low <= value <= high:
        raise ValueError(f"must be {what}")
    return value


def _port(text):
    return _number(text, int, 1, 65535, "a port number, 1-65535")


def _seconds(text):
    return _number(text, float, 0.001, 600, "a number of seconds, above 0 and at most 600")


def _level(text):
    level = text.strip().lower()
    level = {"trace": "debug"}.get(level, level)
    if level not in LEVELS:
        raise ValueError("must be debug, info, warn, error or off")
    return level


# tracing's level names and numbers (LevelFilter), as bindcar's levels.
RUST_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warn",
               "error": "error", "off": "off", "5": "debug", "4": "debug", "3": "info",
               "2": "warn", "1": "error", "0": "off"}
_DIRECTIVE = re.compile(r"(?P<target>[A-Za-z0-9_.:-]*)(?P<span>\[[^\]]*\])?"
                        r"(?:=(?P<level>[A-Za-z0-9]+))?")


def rust_log_level(text):
    """RUST_LOG read as tracing's EnvFilter reads it -> (level, [warnings]).

    Directives are comma-separated: a bare level, or ``target[span]=level``
    (a target alone means every level of it).  A directive applies to
    bindcar when its target is a prefix of ``bindcar``, as EnvFilter matches
    targets, and the longest such target wins; else the bare level; else
    ``info``.  What cannot be read is a warning, never a failed start:
    bindy passes its resource's logLevel here.

    >>> rust_log_level("warn,bindcar=debug,tower_http=info")
    ('debug', [])
    >>> rust_log_level("bind=error,bindcar=warn,info")
    ('warn', [])
    >>> rust_log_level("loud=1=2")
    ('info', ["RUST_LOG: ignored 'loud=1=2': not a level or target=level"])
    """
    bare, ours, longest, warnings = None, None, -1, []
    for directive in (d.strip() for d in text.split(",")):
        if not directive:
            continue
        if directive.lower() in RUST_LEVELS:
            bare = RUST_LEVELS[directive.lower()]
            continue
        match = _DIRECTIVE.fullmatch(directive)
        level = match and RUST_LEVELS.get((match["level"] or "trace").lower())
        if not match or level is None or not (match["target"] or match["span"]):
            warnings.append(f"RUST_LOG: ignored {directive!r}: not a level or target=level")
            continue
        target = match["target"]
        if target and "bindcar".startswith(target) and len(target) > longest:
            ours, longest = level, len(target)
    return ours or bare or "info", warnings


def _server(text):
    """``host:port``, ``[v6]:port`` or a bare host -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port:
            raise ValueError("has a ':' but no port; use host:port or host alone")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("needs a host, as host:port")
    return host, _port(port) if port else None


def _text(text):
    return text


def _names(text):
    """A comma-separated list; empty items are dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _directory(text):
    """A directory, made absolute; empty: none."""
    return os.path.abspath(text) if text.strip() else None


def _zone_names(text):
    return tuple(sorted({_zone_name(name) for name in _names(text)}))


def _loopback_listener(text):
    """``127.0.0.1:8888``, ``[::1]:8888`` or ``localhost:8888`` -> (address, port)."""
    host, port = _server(text)
    if port is None:
        raise ValueError("needs a port, as 127.0.0.1:8888")
    if not _is_loopback(host):
        raise ValueError("external-dns's webhook protocol has no authentication: listen on "
                         "loopback (127.0.0.1:8888), beside external-dns in its pod")
    return ("127.0.0.1" if host == "localhost" else host), port


def _zone_name(text):
    try:
        return zonefile.parse_zone_name(text)
    except zonefile.ZoneError as e:
        raise ValueError(e.message) from None


_HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _secondaries(text):
    """``IP``, ``IP:port``, ``[v6]:port``, ``host`` or ``host:port`` items, comma-separated
    -> ((host, port or None), ...): ``host`` an address, or a name resolved later."""
    servers = []
    for item in _names(text):
        name, _, port = item.partition(":") if item.count(":") == 1 else (item, "", "")
        if _HOST_NAME.fullmatch(name) and not name.replace(".", "").isdigit():
            try:
                servers.append((name.lower().rstrip("."), _port(port) if port else None))
            except ValueError:
                raise ValueError(f"{item!r}: the port is not 1-65535") from None
            continue
        try:
            address, port = zonefile.parse_server(item, "server")
        except zonefile.ZoneError as e:
            raise ValueError(f"{item!r}: not IP, IP:port, [IPv6]:port, host or host:port "
                             f"({e.message})") from None
        if not _a_server(address):
            raise ValueError(f"{address} is not the address of a server")
        servers.append((address, port))
    unique = {}                                 # one per host and port (None is 53)
    for host, port in servers:
        unique.setdefault((host, port or 53), (host, port))
    return tuple(unique.values())


def _key(text):
    try:
        return zonefile.parse_key_name(text)
    except zonefile.ZoneError as e:
        raise ValueError(e.message) from None


def _count(text):
    return _number(text, int, 1, 10**9, "a whole number, at least 1")


SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


# (variable, default, parser, help): the whole of bindcar's configuration.
SETTINGS = (
    ("API_PORT", "8080", _port, "TCP port of the HTTP API"),
    ("BIND_API_ADDRESS", "0.0.0.0", _text, "address to listen on (IPv4 or IPv6)"),
    ("BIND_ZONE_DIR", "/var/cache/bind", _directory,
     "directory of the zone files bindcar writes; must exist and be writable. Empty, or "
     "unset while the default does not exist: none (bindcar beside a remote named): zone "
     "creates, changes and deletes answer 503; records, listings and the webhook work"),
    ("RNDC_SERVER", "127.0.0.1:953", _server,
     "named's control channel, host, host:port or [v6]:port; what it leaves out comes "
     "from RNDC_CONF, else this default"),
    ("RNDC_ALGORITHM", "sha256", rndc_proto.normalize_algorithm,
     "HMAC algorithm of the RNDC key, with or without hmac-; else from RNDC_CONF, "
     "else this default"),
    ("RNDC_SECRET", None, _text, "base64 secret of the RNDC key (else RNDC_SECRET_FILE, "
     "else from RNDC_CONF)"),
    ("RNDC_SECRET_FILE", None, _text, "file holding the base64 RNDC secret"),
    ("RNDC_CONF", None, _text,
     "rndc.conf or rndc.key for whatever the variables above leave unset; default: the "
     "first of " + ", ".join(RNDC_CONF_PATHS) + " that exists"),
    ("RNDC_TIMEOUT", "10", _seconds, "seconds to wait for named's answer"),
    ("RNDC_KEY_NAME", None, _text, "name of the RNDC key, when RNDC_CONF does not give it "
     "(the update key's default name; else rndc-key)"),
    ("NSUPDATE_SERVER", None, _server, "named's DNS port for record changes (UPDATE, AXFR), "
     "host or host:port; default: RNDC's host"),
    ("NSUPDATE_PORT", None, _port, "its port, when NSUPDATE_SERVER gives none (default 53)"),
    ("NSUPDATE_KEY_NAME", None, _text, "TSIG key that signs record changes; default: the "
     "RNDC key's name"),
    ("NSUPDATE_ALGORITHM", None, dns_proto.normalize_algorithm,
     "its HMAC algorithm; default: the RNDC key's"),
    ("NSUPDATE_SECRET", None, _text, "its base64 secret (else NSUPDATE_SECRET_FILE); "
     "default: the RNDC key's"),
    ("NSUPDATE_SECRET_FILE", None, _text, "file holding the base64 update key secret"),
    ("NSUPDATE_TIMEOUT", "10", _seconds, "seconds to wait for named's DNS answer"),
    ("BIND_CATALOG_ZONE", None, _zone_name,
     "a catalog zone (RFC 9432) bindcar keeps in step with the primary zones it manages; "
     "made at start when named has none"),
    ("BIND_SECONDARIES", None, _secondaries,
     "secondaries, IP, IP:port, host or host:port, comma-separated (a name is resolved at "
     "start, every 30 s and for each propagation request): bindcar NOTIFYs them after each "
     "change, follows them until they serve it, and asks them in .../propagation; without "
     "BIND_TRANSFER_KEY, their addresses may transfer the primary zones and the catalog"),
    ("BIND_TRANSFER_KEY", None, _key,
     "a TSIG key named knows, by name: every primary zone bindcar creates and the catalog "
     "let it transfer them (secondaries name it in their primaries), instead of addresses"),
    ("BIND_TRANSFER_KEY_ALGORITHM", "hmac-sha256", dns_proto.normalize_algorithm,
     "its HMAC algorithm, with or without hmac-"),
    ("BIND_TRANSFER_KEY_SECRET", None, _text, "its base64 secret, to sign bindcar's NOTIFYs "
     "with it (else BIND_TRANSFER_KEY_SECRET_FILE; without either, they go unsigned)"),
    ("BIND_TRANSFER_KEY_SECRET_FILE", None, _text, "file holding its base64 secret"),
    ("DISABLE_AUTH", "false", _bool, "true: no authentication at all (a warning is logged)"),
    ("BIND_API_TOKEN", None, _text, "shared secret clients send as 'Authorization: Bearer'"),
    ("BIND_API_TOKEN_FILE", None, _text, "file holding the shared secret"),
    ("BINDCAR_ALLOW_INSECURE_AUTH", "false", _bool,
     "true: allow format-only auth (any Bearer token) on a non-loopback address"),
    ("KUBE_API_SERVER", None, _text,
     "Kubernetes API for TokenReview (else https://$KUBERNETES_SERVICE_HOST:"
     "$KUBERNETES_SERVICE_PORT)"),
    ("KUBE_TOKEN_PATH", f"{SA_MOUNT}/token", _text,
     "bindcar's own ServiceAccount token, re-read when it rotates"),
    ("KUBE_CA_CERT_PATH", f"{SA_MOUNT}/ca.crt", _text, "CA that signs the API server's cert"),
    ("KUBE_API_TIMEOUT", "5", _seconds, "seconds to wait for a TokenReview"),
    ("BIND_TOKEN_AUDIENCES", "bindcar", _names,
     "audiences a client's token must carry, comma-separated"),
    ("BIND_ALLOWED_NAMESPACES", None, _names,
     "namespaces whose ServiceAccounts may call, comma-separated"),
    ("BIND_ALLOWED_SERVICE_ACCOUNTS", None, _names,
     "ServiceAccounts that may call, as system:serviceaccount:<ns>:<name>, comma-separated"),
    ("BIND_ALLOW_ANY_SERVICEACCOUNT", "false", _bool,
     "true: any authenticated ServiceAccount may call (no allowlist)"),
    ("BIND_ENABLE_DOCS", "false", _bool,
     "true: serve /api/v1/openapi.json and the HTML page /api/v1/docs"),
    ("BIND_API_HOSTNAMES", None, _names,
     "with DISABLE_AUTH or format-only auth off loopback: Host names served besides "
     "localhost and addresses (a guard against DNS rebinding), comma-separated"),
    ("MAX_CONNECTIONS_PER_CLIENT", "64", _count,
     "connections one client address may hold at once; past it, 503 to that address"),
    ("RATE_LIMIT_ENABLED", "false", _bool,
     "true: limit requests per caller, and failed authentications per address"),
    ("RATE_LIMIT_REQUESTS", "100", _count, "requests allowed per period, to each bucket"),
    ("RATE_LIMIT_PERIOD_SECS", "60", _count, "the period, in seconds"),
    ("RATE_LIMIT_BURST", "10", _count, "requests a bucket holds for a burst"),
    ("BIND_AUDIT_LOG", None, _directory,
     "a file bindcar appends one JSON line to for each change named accepted, fsync'd "
     "before the answer; while it cannot be written, changes are refused (503)"),
    ("WEBHOOK_ADDRESS", None, _loopback_listener,
     "external-dns's webhook provider: a second listener, on a loopback address:port (e.g. "
     "127.0.0.1:8888), serving its protocol; off when unset"),
    ("WEBHOOK_ZONES", None, _zone_names,
     "the zones the webhook offers external-dns, comma-separated; default: the primary "
     "zones bindcar manages whose allow-update admits the update key"),
    ("LOG_LEVEL", "info", _level,
     "debug, info, warn, error or off; when unset, RUST_LOG is read as tracing's filter"),
)


class Config:
    """The settings, parsed once at start; read-only afterwards."""

    def __repr__(self):
        return f"Config(auth={self.auth_mode!r}, zone_dir={self.zone_dir!r})"

    def describe(self):
        """The effective configuration for the start-up log, secrets as ***."""
        return {"address": self.address, "port": self.port, "zone_dir": self.zone_dir,
                "rndc_server": f"{self.rndc_host}:{self.rndc_port}",
                "rndc_algorithm": self.rndc_algorithm, "rndc_secret": "***",
                "rndc_sources": self.rndc_sources, "auth": self.auth_mode,
                "api_token": "***" if self.api_token else None,
                "kube_api_server": self.kube.api_server if self.kube else None,
                "allowed_namespaces": sorted(self.kube.namespaces) if self.kube else None,
                "allowed_service_accounts": sorted(self.kube.accounts) if self.kube else None,
                "update_server": f"{self.update_host}:{self.update_port}",
                "update_key": self.update_key_name, "update_algorithm": self.update_algorithm,
                "update_secret": "***", "update_sources": self.update_sources,
                "catalog": self.catalog,
                "secondaries": [_server_text(s) for s in self.secondaries],
                "transfer_key": self.transfer_key,
                "notify_signed": self.transfer_signer is not None,
                "audit_log": self.audit_log,
                "webhook": self.webhook and _server_text(self.webhook),
                "webhook_zones": self.webhook_zones,
                "rate_limit": self.rate_limit, "docs": self.enable_docs,
                "rndc_timeout": self.rndc_timeout, "log_level": self.log_level}


def _server_text(server):
    """(address or host name, port or None) -> ``IP:53``, ``[IPv6]:5353``, ``host:53``."""
    host, port = server
    if getattr(host, "version", 4) == 6:
        return f"[{host}]:{port or 53}"
    return f"{host}:{port or 53}"


def _read_secret_file(path, variable):
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{variable}: cannot read {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    if not value:
        raise ConfigError(f"{variable}: {path} is empty")
    return value


def load_config(environ, warn=None):
    """Parse ``environ`` into a Config; ConfigError names the variable at fault.
    ``warn(text)`` is told at once of what reading an rndc.conf finds worth a warning
    (even when a later setting stops the start); without it, ``config.warnings``."""
    values = {}
    for name, default, parse, _ in SETTINGS:
        raw = environ.get(name)
        if raw is None:
            values[name] = None if default is None else parse(default)
            continue
        try:
            values[name] = parse(raw)
        except ValueError as e:
            raise ConfigError(f"{name}={raw!r}: {e}") from None
    config = Config()
    config.port, config.address = values["API_PORT"], values["BIND_API_ADDRESS"]
    config.zone_dir, config.log_level = values["BIND_ZONE_DIR"], values["LOG_LEVEL"]
    config.warnings = []                  # logged once the log is set up
    if "LOG_LEVEL" not in environ and environ.get("RUST_LOG"):
        config.log_level, config.warnings = rust_log_level(environ["RUST_LOG"])
    config.rndc_timeout = values["RNDC_TIMEOUT"]
    config.enable_docs = values["BIND_ENABLE_DOCS"]
    config.max_per_client = values["MAX_CONNECTIONS_PER_CLIENT"]
    config.allow_insecure = values["BINDCAR_ALLOW_INSECURE_AUTH"]
    config.host_names = frozenset(name.lower() for name in values["BIND_API_HOSTNAMES"] or ())
    config.rate_limit = ((values["RATE_LIMIT_REQUESTS"], values["RATE_LIMIT_PERIOD_SECS"],
                          values["RATE_LIMIT_BURST"]) if values["RATE_LIMIT_ENABLED"] else None)
    config.catalog = values["BIND_CATALOG_ZONE"]
    if config.catalog and "/" in config.catalog:
        raise ConfigError(f"BIND_CATALOG_ZONE={config.catalog!r}: a catalog's name holds no '/'")
    config.secondaries = values["BIND_SECONDARIES"] or ()
    config.webhook, config.webhook_zones = values["WEBHOOK_ADDRESS"], values["WEBHOOK_ZONES"]
    config.audit_log = values["BIND_AUDIT_LOG"]
    _load_zone_dir(config, environ)
    _load_transfer_key(config, values)
    _load_rndc(config, environ, values, warn or config.warnings.append)
    _load_update_key(config, values)
    _load_auth(config, environ, values)
    return config


def _load_zone_dir(config, environ):
    """No zone directory, for a bindcar beside a remote named (external-dns's sidecar):
    BIND_ZONE_DIR empty, or unset while its default does not exist.  What needs one is
    refused at start."""
    if config.zone_dir and "BIND_ZONE_DIR" not in environ and \
            not os.path.exists(config.zone_dir):
        config.zone_dir = None
    if config.zone_dir:
        return
    if config.catalog:
        raise ConfigError("BIND_CATALOG_ZONE needs a zone directory (BIND_ZONE_DIR): the "
                          "catalog is a zone bindcar writes")
    if config.webhook and not config.webhook_zones:
        raise ConfigError("WEBHOOK_ADDRESS without a zone directory (BIND_ZONE_DIR) needs "
                          "WEBHOOK_ZONES: bindcar manages no zone it could offer by default")
    config.warnings.append("no zone directory (BIND_ZONE_DIR is empty, or unset and "
                           "/var/cache/bind does not exist): zones are not created, changed "
                           "or deleted here (503); records, listings and the webhook work")


def _load_rndc(config, environ, values, warn):
    """Server, port, algorithm and secret, each from its variable, else the rndc.conf,
    else the default, as the Rust bindcar takes them; ``config.rndc_sources`` says
    where each came from.  bindy sets RNDC_SECRET and RNDC_ALGORITHM and mounts an
    rndc.conf whose ``default-port`` is not 953."""
    given = {}                                      # field -> (value, variable)
    if "RNDC_SERVER" in environ:
        host, port = values["RNDC_SERVER"]
        given["server"] = (host, "RNDC_SERVER")
        if port is not None:
            given["port"] = (port, "RNDC_SERVER")
    if "RNDC_ALGORITHM" in environ:
        given["algorithm"] = (values["RNDC_ALGORITHM"], "RNDC_ALGORITHM")
    if values["RNDC_SECRET"]:
        given["secret"] = (values["RNDC_SECRET"], "RNDC_SECRET")
    elif values["RNDC_SECRET_FILE"]:
        given["secret"] = (_read_secret_file(values["RNDC_SECRET_FILE"], "RNDC_SECRET_FILE"),
                           "RNDC_SECRET_FILE")
    conf, path = None, values["RNDC_CONF"]
    if path is None and len(given) < 4:
        paths = RNDC_CONF_PATHS
        if environ.get("CREDENTIALS_DIRECTORY"):          # systemd LoadCredential=rndc.key:...
            paths = (os.path.join(environ["CREDENTIALS_DIRECTORY"], CREDENTIAL_RNDC),) + paths
        path = next((p for p in paths if os.path.exists(p)), None)
    if path is None and "secret" not in given:
        raise ConfigError("no RNDC key: set RNDC_SECRET (or RNDC_SECRET_FILE), or "
                          "RNDC_CONF to an rndc.conf or rndc.key")
    if path is not None:
        try:
            conf = rndc_proto.load_config(path, server=given.get("server", (None,))[0],
                                          need_key="secret" not in given, warn=warn)
        except rndc_proto.RndcConfigError as e:
            if values["RNDC_CONF"] or "secret" not in given:
                raise ConfigError(f"RNDC_CONF: {e}") from None
            # A default path that bindcar's user may not read (Debian's rndc.key is
            # root:bind 0640) must not stop a bindcar whose key is in the variables.
            config.warnings.append(f"RNDC_CONF: ignored {e}; what the RNDC variables leave "
                                   "unset takes its default")
    from_conf = {"server": conf and conf.host, "port": conf and conf.port,
                 "algorithm": conf and conf.algorithm, "secret": conf and conf.secret}
    defaults = {"server": "127.0.0.1", "port": rndc_proto.DEFAULT_PORT,  # RNDC_SERVER's
                "algorithm": values["RNDC_ALGORITHM"]}        # the parsed default when unset
    chosen, config.rndc_sources = {}, {}
    for field in ("server", "port", "algorithm", "secret"):
        if field in given:
            chosen[field], config.rndc_sources[field] = given[field]
        elif from_conf[field] is not None:
            chosen[field], config.rndc_sources[field] = from_conf[field], path
        else:
            chosen[field], config.rndc_sources[field] = defaults[field], "default"
    config.rndc_key_name = values["RNDC_KEY_NAME"] or (conf and conf.key_name)
    config.rndc_host, config.rndc_port = chosen["server"], chosen["port"]
    config.rndc_algorithm, config.rndc_secret = chosen["algorithm"], chosen["secret"]
    try:
        rndc_proto.RndcClient(config.rndc_host, config.rndc_port, config.rndc_algorithm,
                              config.rndc_secret)
    except ValueError as e:
        raise ConfigError(f"{config.rndc_sources['secret']}: {e}") from None


def _load_update_key(config, values):
    """Where record changes go and the TSIG key that signs them: each field from its
    NSUPDATE_ variable, else the RNDC setting (bindy makes its RNDC key every zone's
    update key), else the default: named on RNDC's host, port 53, key ``rndc-key``."""
    host, port = values["NSUPDATE_SERVER"] or (None, None)
    if port and values["NSUPDATE_PORT"] and port != values["NSUPDATE_PORT"]:
        raise ConfigError(f"NSUPDATE_SERVER says port {port} and NSUPDATE_PORT "
                          f"{values['NSUPDATE_PORT']}: give the port once")
    port_variable = "NSUPDATE_SERVER" if port else "NSUPDATE_PORT"
    secret, secret_variable = values["NSUPDATE_SECRET"], "NSUPDATE_SECRET"
    if not secret and values["NSUPDATE_SECRET_FILE"]:
        secret_variable = "NSUPDATE_SECRET_FILE"
        secret = _read_secret_file(values["NSUPDATE_SECRET_FILE"], secret_variable)
    rndc_key = "RNDC key" if config.rndc_key_name else "default"
    # field -> (value given, its variable, else this value, said to come from here)
    fields = {"server": (host, "NSUPDATE_SERVER", config.rndc_host, "RNDC server"),
              "port": (port or values["NSUPDATE_PORT"], port_variable, 53, "default"),
              "key": (values["NSUPDATE_KEY_NAME"], "NSUPDATE_KEY_NAME",
                      config.rndc_key_name or "rndc-key", rndc_key),
              "algorithm": (values["NSUPDATE_ALGORITHM"], "NSUPDATE_ALGORITHM",
                            config.rndc_algorithm, "RNDC key"),
              "secret": (secret, secret_variable, config.rndc_secret, "RNDC key")}
    chosen, config.update_sources = {}, {}
    for field, (given, variable, fallback, fallback_source) in fields.items():
        chosen[field] = given or fallback
        config.update_sources[field] = variable if given else fallback_source
    config.update_host, config.update_port = chosen["server"], chosen["port"]
    config.update_key_name, config.update_algorithm = chosen["key"], chosen["algorithm"]
    config.update_secret, config.update_timeout = chosen["secret"], values["NSUPDATE_TIMEOUT"]
    if values["NSUPDATE_KEY_NAME"] and not secret:
        # Not wrong (bindcar's tests give named.conf's update key the RNDC secret), but a
        # mismatch shows only at the first record change, as BADSIG: say it at start.
        config.warnings.append(f"NSUPDATE_KEY_NAME={config.update_key_name} signs with the "
                               "RNDC key's secret and algorithm (NSUPDATE_SECRET is unset): "
                               "named must hold that key with that secret")
    try:
        dns_proto.DnsClient(config.update_host, config.update_port, config.update_key_name,
                            config.update_algorithm, config.update_secret)
    except ValueError as e:
        raise ConfigError(f"the update key ({config.update_sources['key']}, "
                          f"{config.update_sources['secret']}): {e}") from None


def _load_transfer_key(config, values):
    """BIND_TRANSFER_KEY, and the secret that signs bindcar's NOTIFYs with it when one is
    given: ``config.transfer_signer`` is (name, algorithm, secret bytes) or None."""
    config.transfer_key, config.transfer_signer = values["BIND_TRANSFER_KEY"], None
    secret, variable = values["BIND_TRANSFER_KEY_SECRET"], "BIND_TRANSFER_KEY_SECRET"
    if not secret and values["BIND_TRANSFER_KEY_SECRET_FILE"]:
        variable = "BIND_TRANSFER_KEY_SECRET_FILE"
        secret = _read_secret_file(values[variable], variable)
    if not secret:
        return
    if not config.transfer_key:
        raise ConfigError(f"{variable} is set without BIND_TRANSFER_KEY: name the key")
    try:
        data = base64.b64decode(secret, validate=True)
    except ValueError:
        data = b""
    if not data:
        raise ConfigError(f"{variable}: not a base64 secret")
    config.transfer_signer = (config.transfer_key, values["BIND_TRANSFER_KEY_ALGORITHM"], data)


def _host_name(host):
    """A Host header's name, lower case: ``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``."""
    name = host[1:].partition("]")[0] if host.startswith("[") else \
        host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.lower()


def _is_loopback(address):
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _load_auth(config, environ, values):
    """The mode: disabled, a shared token, TokenReview in a cluster, or format only."""
    token = values["BIND_API_TOKEN"]
    if not token and values["BIND_API_TOKEN_FILE"]:
        token = _read_secret_file(values["BIND_API_TOKEN_FILE"], "BIND_API_TOKEN_FILE")
    credential = os.path.join(environ.get("CREDENTIALS_DIRECTORY", ""), CREDENTIAL_TOKEN)
    if not token and environ.get("CREDENTIALS_DIRECTORY") and os.path.exists(credential):
        token = _read_secret_file(credential, f"systemd credential {CREDENTIAL_TOKEN}")
    config.api_token = token or None
    config.kube = None
    api_server = values["KUBE_API_SERVER"]
    if not api_server and environ.get("KUBERNETES_SERVICE_HOST"):
        host = environ["KUBERNETES_SERVICE_HOST"]
        host = f"[{host}]" if ":" in host else host
        api_server = f"https://{host}:{environ.get('KUBERNETES_SERVICE_PORT', '443')}"
    if values["DISABLE_AUTH"]:
        config.auth_mode = "disabled"
    elif token:
        config.auth_mode = "token"
    elif api_server:
        config.auth_mode = "tokenreview"
        config.kube = _load_kube(api_server, values)
    elif _is_loopback(config.address) or values["BINDCAR_ALLOW_INSECURE_AUTH"]:
        config.auth_mode = "format-only"
    else:
        raise ConfigError(
            f"no authentication configured while listening on {config.address}: set "
            "BIND_API_TOKEN or BIND_API_TOKEN_FILE to a shared secret (or DISABLE_AUTH=true "
            "behind another guard); BINDCAR_ALLOW_INSECURE_AUTH=true accepts any Bearer "
            "token and is unsafe off loopback")


def _load_kube(api_server, values):
    """TokenReview settings, checked now so that a mistake stops bindcar at start."""
    if not api_server.startswith("https://"):
        raise ConfigError(f"KUBE_API_SERVER={api_server!r}: must be an https:// URL")
    namespaces = values["BIND_ALLOWED_NAMESPACES"] or ()
    accounts = values["BIND_ALLOWED_SERVICE_ACCOUNTS"] or ()
    if not namespaces and not accounts and not values["BIND_ALLOW_ANY_SERVICEACCOUNT"]:
        raise ConfigError("TokenReview needs an allowlist: set BIND_ALLOWED_NAMESPACES or "
                          "BIND_ALLOWED_SERVICE_ACCOUNTS (or BIND_ALLOW_ANY_SERVICEACCOUNT=true "
                          "to let every ServiceAccount of the cluster change zones)")
    for account in accounts:
        if not account.startswith("system:serviceaccount:") or account.count(":") != 3:
            raise ConfigError(f"BIND_ALLOWED_SERVICE_ACCOUNTS: {account!r} is not "
                              "system:serviceaccount:<namespace>:<name>")
    _read_secret_file(values["KUBE_TOKEN_PATH"], "KUBE_TOKEN_PATH")
    try:
        context = ssl.create_default_context(cafile=values["KUBE_CA_CERT_PATH"])
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"KUBE_CA_CERT_PATH: cannot load {values['KUBE_CA_CERT_PATH']}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    if not values["BIND_TOKEN_AUDIENCES"]:
        raise ConfigError("BIND_TOKEN_AUDIENCES: needs at least one audience")
    return KubeSettings(api_server.rstrip("/"), values["KUBE_TOKEN_PATH"], context,
                        values["KUBE_API_TIMEOUT"], values["BIND_TOKEN_AUDIENCES"],
                        frozenset(namespaces), frozenset(accounts))


class KubeSettings:
    """Where and how to ask Kubernetes who a token belongs to."""

    def __init__(self, api_server, token_path, context, timeout, audiences, namespaces,
                 accounts):
        self.api_server, self.token_path, self.context = api_server, token_path, context
        self.timeout, self.audiences = timeout, audiences
        self.namespaces, self.accounts = namespaces, accounts


def usage():
    lines = ["usage: python3 bindcar.py [--help]", "",
             "bindcar serves an HTTP API that manages BIND9 zones over RNDC.",
             "Configuration, from the environment (default in brackets):", ""]
    for name, default, _, help_text in SETTINGS:
        lines.append(f"  {name:<30} {help_text}" + (f" [{default}]" if default else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- logging

class Log:
    """One JSON object per line on stderr; nothing secret is ever passed in."""

    def __init__(self, level="info", stream=None):
        self.set_level(level)
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def set_level(self, level):
        self.level = LEVELS[level]

    def wants(self, level):
        return LEVELS[level] >= self.level

    def __call__(self, level, message, **fields):
        if LEVELS[level] < self.level:
            return
        record = {"timestamp": _timestamp(time.time()), "level": level, "message": message}
        record.update((k, v) for k, v in fields.items() if v is not None)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass                # a full disk or a closed stderr must not fail a request


def _timestamp(now):
    """UTC, to the millisecond: 2026-12-06T12:00:00.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + \
        f".{int(now * 1000) % 1000:03d}Z"


# ---------------------------------------------------------------- metrics

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
           0.5, 1.0, 2.5, 5.0, 10.0)

# name -> (type, help, label names)
METRICS = {
    "bindcar_http_requests_total": ("counter", "HTTP requests answered.",
                                    ("method", "path", "status")),
    "bindcar_http_request_duration_seconds": ("histogram", "Time to answer an HTTP request.",
                                              ("method", "path")),
    "bindcar_zone_operations_total": ("counter", "Zone operations through the API.",
                                      ("operation", "result")),
    "bindcar_record_operations_total": ("counter", "Record operations through the API.",
                                        ("operation", "result")),
    "bindcar_dns_update_duration_seconds": ("histogram", "Time named took to answer an UPDATE.",
                                            ("operation",)),
    "bindcar_catalog_repairs_total": ("counter", "Catalog members added or removed to "
                                      "match the zones, at start or on reconcile.", ()),
    "bindcar_notifies_sent_total": ("counter", "NOTIFYs bindcar sent to the secondaries.", ()),
    "bindcar_webhook_requests_total": ("counter", "external-dns's webhook calls answered.",
                                       ("call", "status")),
    "bindcar_webhook_request_duration_seconds": ("histogram", "Time to answer a webhook "
                                                 "call.", ("call",)),
    "bindcar_webhook_changes_total": ("counter", "Record sets external-dns asked to change, "
                                      "by whether they were applied.", ("result",)),
    "bindcar_webhook_zone_reads_total": ("counter", "Zones read for GET /records: by a "
                                         "transfer, or from the cache while the SOA serial "
                                         "is the same.", ("how",)),
    "bindcar_rndc_commands_total": ("counter", "RNDC commands sent to named.",
                                    ("command", "result")),
    "bindcar_rndc_command_duration_seconds": ("histogram", "Time named took to answer.",
                                              ("command",)),
}
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class Metrics:
    """Counters and histograms keyed by label values; one lock, a few dict operations."""

    def __init__(self):
        self.lock = threading.Lock()
        self.values = {name: {} for name in METRICS}

    def count(self, name, labels, n=1):
        with self.lock:
            self._count(name, labels, n)

    def observe(self, name, labels, seconds):
        with self.lock:
            self._observe(name, labels, seconds)

    def count_and_observe(self, counter, counter_labels, histogram, labels, seconds):
        """One event for a counter and a histogram, under one acquisition of the lock."""
        with self.lock:
            self._count(counter, counter_labels)
            self._observe(histogram, labels, seconds)

    def _count(self, name, labels, n=1):
        series = self.values[name]
        series[labels] = series.get(labels, 0) + n

    def _observe(self, name, labels, seconds):
        series = self.values[name].get(labels)
        if series is None:
            series = self.values[name][labels] = [[0] * len(BUCKETS), 0.0, 0]
        bucket = bisect.bisect_left(BUCKETS, seconds)   # the first bound >= seconds
        if bucket < len(BUCKETS):
            series[0][bucket] += 1
        series[1] += seconds
        series[2] += 1

    def render(self, gauges):
        """Prometheus text format 0.0.4; ``gauges`` adds (name, help, value) lines."""
        with self.lock:
            snapshot = {name: {k: (v if isinstance(v, int) else [list(v[0]), v[1], v[2]])
                               for k, v in series.items()}
                        for name, series in self.values.items()}
        out = []
        for name, (kind, help_text, label_names) in METRICS.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for labels, value in sorted(snapshot[name].items()):
                pairs = [f'{k}="{_escape_label(v)}"' for k, v in zip(label_names, labels)]
                if kind == "counter":
                    out.append(f"{name}{{{','.join(pairs)}}} {value}" if pairs else
                               f"{name} {value}")
                    continue
                buckets, total, count = value
                cumulative = 0
                for bound, n in zip(BUCKETS, buckets):
                    cumulative += n
                    le = ",".join(pairs + [f'le="{bound}"'])
                    out.append(f"{name}_bucket{{{le}}} {cumulative}")
                infinity = ",".join(pairs + ['le="+Inf"'])
                out.append(f"{name}_bucket{{{infinity}}} {count}")
                out.append(f"{name}_sum{{{','.join(pairs)}}} {total!r}")
                out.append(f"{name}_count{{{','.join(pairs)}}} {count}")
        for name, kind, help_text, labels, value in gauges:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                    f"{name}{labels} {value}"]
        return ("\n".join(out) + "\n").encode()


def _traceback():
    """The exception being handled, with its traceback, for the log (imported only
    when something went wrong)."""
    import traceback
    return traceback.format_exc()


def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


PROCESS_START = time.time()        # /proc/stat is hidden under systemd's ProcSubset=pid


def process_gauges():
    """RSS, start time and open file descriptors of this process."""
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start = PROCESS_START
    return [
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "", rss),
        ("process_start_time_seconds", "gauge", "Start time since the epoch, in seconds.", "",
         start),
        ("process_open_fds", "gauge", "Open file descriptors.", "",
         len(os.listdir("/proc/self/fd"))),
    ]


# ---------------------------------------------------------------- auth: Kubernetes TokenReview

REVIEW_CACHE_TTL = 10.0          # seconds a positive review is trusted
REVIEW_CACHE_SIZE = 1024         # reviews remembered, by the token's SHA-256
MAX_REVIEW_REPLY = 1 << 20


class AuthUnavailable(Exception):
    """The API server could not give an answer; the request must not pass."""


class TokenReviewer:
    """Asks the Kubernetes API who a bearer token belongs to.

    A token passes only when the review says ``authenticated`` **and** names one of
    our audiences in ``status.audiences`` (an empty list means "valid for the API
    server", which every pod's default token is), the user is a ServiceAccount, and
    every configured allowlist admits it.
    """

    def __init__(self, kube, log):
        self.kube, self.log = kube, log
        self.cache, self.lock = {}, threading.Lock()
        import urllib.request           # only with TokenReview: nothing else needs it
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=kube.context))
        self.url = kube.api_server + "/apis/authentication.k8s.io/v1/tokenreviews"

    def known(self, token):
        """Is ``token`` among the positive reviews still cached?"""
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        with self.lock:
            hit = self.cache.get(key)
        return hit is not None and hit[0] > time.monotonic()

    def identify(self, token):
        """The ServiceAccount username; ApiError 401/403, or AuthUnavailable."""
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = time.monotonic()
        with self.lock:
            hit = self.cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        username = self._review(token)
        with self.lock:
            if len(self.cache) >= REVIEW_CACHE_SIZE:
                for old in [k for k, v in self.cache.items() if v[0] <= now] or \
                        list(self.cache)[:REVIEW_CACHE_SIZE // 4]:
                    del self.cache[old]
            self.cache[key] = (now + REVIEW_CACHE_TTL, username)
        return username

    def _review(self, token):
        status = self._post(token).get("status")
        if not isinstance(status, dict):
            raise AuthUnavailable("the TokenReview answer has no status")
        if status.get("authenticated") is not True:
            self.log("info", "token refused by TokenReview", error=status.get("error"))
            raise ApiError(401, "Unauthorized")
        audiences = status.get("audiences") or []
        if not isinstance(audiences, list) or not set(audiences) & set(self.kube.audiences):
            self.log("info", "token refused: not issued for this audience",
                     audiences=audiences, wanted=list(self.kube.audiences))
            raise ApiError(401, "Unauthorized")
        user = status.get("user") if isinstance(status.get("user"), dict) else {}
        username = user.get("username")
        parts = username.split(":") if isinstance(username, str) else []
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            self.log("info", "token refused: not a ServiceAccount", identity=username)
            raise ApiError(403, "Only Kubernetes ServiceAccounts may call this API")
        if self.kube.namespaces and parts[2] not in self.kube.namespaces:
            self.log("info", "ServiceAccount's namespace not allowed", identity=username)
            raise ApiError(403, f"Namespace {parts[2]} is not allowed")
        if self.kube.accounts and username not in self.kube.accounts:
            self.log("info", "ServiceAccount not allowed", identity=username)
            raise ApiError(403, f"ServiceAccount {username} is not allowed")
        return username

    def _post(self, token):
        import urllib.error                 # imported with urllib.request in __init__
        import urllib.request
        try:
            with open(self.kube.token_path, encoding="utf-8") as f:
                own = f.read().strip()                  # re-read: kubelet rotates it
        except OSError as e:
            raise AuthUnavailable(f"cannot read {self.kube.token_path}: {e.strerror}") from None
        body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                           "spec": {"token": token, "audiences": list(self.kube.audiences)}})
        request = urllib.request.Request(
            self.url, body.encode(), method="POST",
            headers={"Authorization": f"Bearer {own}", "Content-Type": "application/json",
                     "Accept": "application/json"})
        try:
            with self.opener.open(request, timeout=self.kube.timeout) as reply:
                data = reply.read(MAX_REVIEW_REPLY + 1)
        except urllib.error.HTTPError as e:
            hint = {401: "bindcar's own ServiceAccount token was refused",
                    403: "bindcar's ServiceAccount may not create TokenReviews "
                         "(bind it to system:auth-delegator)"}.get(e.code, "")
            raise AuthUnavailable(f"TokenReview answered HTTP {e.code}; {hint}") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise AuthUnavailable(f"TokenReview failed: {reason}") from None
        try:
            review = json.loads(data) if len(data) <= MAX_REVIEW_REPLY else None
        except ValueError:
            review = None
        if not isinstance(review, dict) or review.get("kind") != "TokenReview":
            raise AuthUnavailable("the TokenReview answer is not a TokenReview")
        return review


# ---------------------------------------------------------------- auth: rate limits, and the gate

MAX_BUCKETS = 10000              # client addresses remembered at once


class RateLimiter:
    """A token bucket per key (a caller, an address): ``burst`` at once, refilled at
    requests/period."""

    def __init__(self, requests, period, burst):
        self.rate, self.burst = requests / period, float(burst)
        self.buckets, self.lock = {}, threading.Lock()

    def take(self, client):
        """0 when the request may go on, else the seconds to wait for the next one."""
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                if len(self.buckets) >= MAX_BUCKETS and client not in self.buckets:
                    self._forget_full(now)
                self.buckets[client] = (tokens - 1, now)
                return 0
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate

    def exhausted(self, key):
        """Would ``take`` refuse ``key`` now? Takes nothing."""
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (self.burst, now))
        return tokens + (now - last) * self.rate < 1

    def _forget_full(self, now):
        """Drop addresses whose buckets have refilled: they are where a new one starts."""
        for client, (tokens, last) in list(self.buckets.items()):
            if tokens + (now - last) * self.rate >= self.burst:
                del self.buckets[client]
        if len(self.buckets) >= MAX_BUCKETS:
            self.buckets.clear()


class Gate:
    """Who may ask: the Host check against DNS rebinding, the bearer token (a shared
    secret, or Kubernetes' TokenReview), and the rate limits."""

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.mode = config.auth_mode
        self.token_digest = (hashlib.sha256(config.api_token.encode()).digest()
                             if config.api_token else None)
        self.reviewer = TokenReviewer(config.kube, log) if config.kube else None
        self.limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None
        self.guard_host = None                # set at start: see check_bound_address

    def check_host(self, host):
        """421 for a Host a web page could have rebound to bindcar (with no real auth).

        A page whose own name the attacker points at bindcar's address sends that
        name as the Host; so without authentication bindcar answers only
        localhost, loopback addresses and, off loopback, any address literal and
        the names in BIND_API_HOSTNAMES.
        """
        if host is None:                        # HTTP/1.0 without one: not a browser
            return
        name = _host_name(host)
        if _is_loopback(name):
            return
        if self.guard_host == "literal":
            if name in self.config.host_names:
                return
            try:
                ipaddress.ip_address(name)
                return
            except ValueError:
                pass
        raise ApiError(421, f"Host {host!r} is not one bindcar answers without "
                       "authentication (localhost, an address, or a name in "
                       "BIND_API_HOSTNAMES), so that no web page can reach it through DNS "
                       "rebinding")

    def limit(self, bucket):
        """ApiError 429 when ``bucket`` of the rate limiter is empty."""
        wait = self.limiter.take(bucket)
        if wait:
            raise ApiError(429, "Too many requests",
                           headers=[("Retry-After", str(math.ceil(wait)))])

    def authenticate(self, headers, client="-"):
        """Who is calling; ApiError 401/403/503, or 429 past the failures allowed.

        With rate limiting on, failed attempts are counted per address in a
        bucket of their own, so that a stranger's 401s cannot use up the
        requests of a caller behind the same address (a NAT, localhost).
        """
        try:
            return self._authenticate(headers, client)
        except ApiError as e:
            if self.limiter and e.status in (401, 403):
                self.limit(("failed", client))
            raise

    def _authenticate(self, headers, client):
        """The check of the mode chosen at start."""
        if self.mode == "disabled":
            return "anonymous"
        value = headers.get("Authorization")
        if value is None:
            raise ApiError(401, "Missing Authorization header")
        if value != "Bearer" and not value.startswith("Bearer "):   # "Bearer " arrives trimmed
            raise ApiError(401, "Invalid Authorization header format. Expected: Bearer <token>")
        token = value[7:].strip()
        if not token:
            raise ApiError(401, "Empty token")
        if self.mode == "token":
            # Digests of equal length: the comparison's time says nothing of the token,
            # not even its length.
            given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
            if not hmac.compare_digest(given, self.token_digest):
                raise ApiError(401, "Unauthorized")
            return "token"
        if self.mode == "tokenreview":
            # Past its failures, an address gets no new reviews (each is a call to the
            # API server); a token already reviewed still passes, so no lockout.
            if self.limiter and self.limiter.exhausted(("failed", client)) and \
                    not self.reviewer.known(token):
                self.limit(("failed", client))
            try:
                return self.reviewer.identify(token)
            except AuthUnavailable as e:
                self.log("error", "cannot authenticate: the Kubernetes API did not answer",
                         error=str(e))
                raise ApiError(503, "Authentication service unavailable") from None
        return "bearer (format only)"


# ---------------------------------------------------------------- errors and responses

class ApiError(Exception):
    """Raised anywhere in a handler; becomes the JSON error body in one place."""

    def __init__(self, status, message, field=None, details=None, headers=()):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.details, self.headers = details, tuple(headers)


class Unreachable(ApiError):
    """503: named did not answer an RNDC command; ``sent`` is False when the command
    never left, so named cannot have run it."""

    def __init__(self, error):
        super().__init__(503, "named is not reachable over RNDC", details=str(error))
        self.sent = error.sent


class Response:
    __slots__ = ("status", "body", "headers", "route", "zone", "identity", "content_type")

    def __init__(self, status, body, headers=(), route=None, zone=None):
        self.status, self.body, self.headers = status, body, headers
        self.route, self.zone, self.identity = route, zone, None
        self.content_type = "application/json"


def json_body(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def error_body(message, field=None, details=None):
    body = {"error": message, "details": details}
    if field:
        body["field"] = field
    return json_body(body)


INTERNAL_ERROR = error_body("Internal server error")
HEALTHY = json_body({"status": "healthy", "version": VERSION})


class Request:
    """What a handler is given: the headers, the body (bytes, None when there is no
    Content-Length, or the function that reads it off the wire), the query string, and
    who asks (set once authenticated)."""

    __slots__ = ("headers", "body", "query", "client", "identity", "audit")

    def __init__(self, headers, body, query="", client="-"):
        self.headers, self.body, self.query, self.client = headers, body, query, client
        self.identity, self.audit = None, None   # audit: what a change did, for the trail

    def json(self):
        """The JSON body; only a handler that takes a body reads it (and only once
        the caller is authenticated)."""
        return parse_json(self.raw(("application/json",), "application/json"))

    def raw(self, types, named):
        """The body's bytes when its Content-Type is one of ``types`` (415 naming
        ``named`` otherwise; such a body is left unread, its connection closed)."""
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        body = self.body
        if callable(body):
            body = body() if ctype in types or \
                self.headers.get("Content-Length") is None else b""
        if body is None:
            raise ApiError(411, "A body needs a Content-Length header")
        if ctype not in types:
            raise ApiError(415, f"Content-Type must be {named}")
        return body

    def params(self, allowed):
        """The query string as {name: value}: only ``allowed`` names, each once."""
        try:
            pairs = urllib.parse.parse_qsl(self.query, keep_blank_values=True,
                                           max_num_fields=MAX_QUERY_FIELDS, errors="strict")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Malformed query string: known parameters are "
                           + ", ".join(allowed), "query") from None
        params = {}
        for key, value in pairs:
            if key not in allowed or key in params:
                raise ApiError(400, f"{key}: unknown or repeated query parameter (known: "
                               + ", ".join(allowed) + ")", key)
            params[key] = value
        return params

    def who(self):
        """The caller, for the log line of a change."""
        return {"identity": self.identity, "client": self.client}


def parse_json(body):
    """A body's JSON: 400 naming the body when it is none."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_int=_json_int)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"Malformed JSON: {e}", "body") from None


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _json_int(text):
    """An integer of the body.  None this API takes has 20 digits, so a longer one (past
    4,300 digits int() refuses it, in Python's words) is read as 10**20: out of range,
    for the field's own check to name."""
    return int(text) if len(text) <= 20 else 10**20 * (-1 if text[0] == "-" else 1)



# ---------------------------------------------------------------- routes and dispatch

class App:
    """The front door: the route table, ``dispatch`` (the whole request path, no sockets
    here), and the open endpoints.  Each resource is a room of its own: ``zones``,
    ``records``, ``catalog`` (its reconcile is the ``settler``'s: it settles the zones
    first); everything said to named goes through ``named``."""

    # (method, path template, handler (its OpenAPI operationId), needs auth, zone
    #  operation for metrics, the room whose method answers; the handler's last part
    #  is the method's name)
    ROUTES = (
        ("GET", "/health", "health", False, None, "app"),
        ("GET", "/api/v1/health", "health", False, None, "app"),
        ("GET", "/ready", "ready", False, None, "app"),
        ("GET", "/api/v1/ready", "ready", False, None, "app"),
        ("GET", "/metrics", "metrics_page", False, None, "app"),
        ("GET", "/api/v1/openapi.json", "openapi", False, None, "app"),
        ("GET", "/api/v1/docs", "docs", False, None, "app"),
        ("GET", "/api/v1/server/status", "server_status", True, None, "zones"),
        ("POST", "/api/v1/server/reload", "server_reload", True, "server_reload", "zones"),
        ("POST", "/api/v1/zones", "create_zone", True, "create", "zones"),
        ("GET", "/api/v1/zones", "list_zones", True, None, "zones"),
        ("GET", "/api/v1/zones/{name}", "get_zone", True, None, "zones"),
        ("PATCH", "/api/v1/zones/{name}", "modify_zone", True, "modify", "zones"),
        ("DELETE", "/api/v1/zones/{name}", "delete_zone", True, "delete", "zones"),
        ("POST", "/api/v1/zones/{name}/reload", "reload_zone", True, "reload", "zones"),
        ("GET", "/api/v1/zones/{name}/status", "zone_status", True, "status", "zones"),
        ("POST", "/api/v1/zones/{name}/freeze", "freeze_zone", True, "freeze", "zones"),
        ("POST", "/api/v1/zones/{name}/thaw", "thaw_zone", True, "thaw", "zones"),
        ("POST", "/api/v1/zones/{name}/notify", "notify_zone", True, "notify", "zones"),
        ("POST", "/api/v1/zones/{name}/retransfer", "retransfer_zone", True, "retransfer",
         "zones"),
        ("GET", "/api/v1/zones/{name}/records", "records.listing", True, "record_list",
         "records"),
        ("POST", "/api/v1/zones/{name}/records", "records.add", True, "record_add", "records"),
        ("PUT", "/api/v1/zones/{name}/records", "records.replace", True, "record_update",
         "records"),
        ("DELETE", "/api/v1/zones/{name}/records", "records.remove", True, "record_remove",
         "records"),
        ("PATCH", "/api/v1/zones/{name}/records", "records.change", True, "record_batch",
         "records"),
        ("GET", "/api/v1/catalog", "catalog.status", True, None, "catalog"),
        ("POST", "/api/v1/catalog/reconcile", "catalog.repair", True, "catalog_reconcile",
         "settler"),                    # the zones' unknown outcomes are settled first
        ("GET", "/api/v1/zones/{name}/history", "audit.history", True, None, "audit"),
        ("GET", "/api/v1/zones/{name}/dnssec", "dnssec.status", True, None, "dnssec"),
        ("POST", "/api/v1/zones/{name}/dnssec/checkds", "dnssec.checkds", True, "checkds",
         "dnssec"),
        ("GET", "/api/v1/zones/{name}/propagation", "catalog.propagation", True, None,
         "catalog"),
    )

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.metrics = Metrics()
        self.gate = Gate(config, log)
        self.named = Named(config, log, self.metrics)
        self.managed = Managed(config, log, self.named)
        self.catalog = Catalog(config, log, self.named, self.managed)
        self.settler = Settler(log, self.named, self.managed, self.catalog)
        self.roster = self.catalog.roster = Roster(config, log)
        self.secondaries = Secondaries(config, log, self.named, self.managed, self.catalog,
                                       self.roster)
        self.alignment = self.catalog.alignment = Alignment(
            config, log, self.named, self.managed, self.catalog, self.secondaries)
        self.named.changed = self._changed
        self.zones = Zones(config, log, self.named, self.managed, self.catalog, self.settler)
        self.records = Records(config, log, self.named)
        self.audit = Audit(config, log)
        self.dnssec = Dnssec(log, self.named)
        self.webhook = Webhook(config, log, self.named, self.managed, self.metrics,
                               self.audit) if config.webhook else None
        self._ready = (0.0, None)
        self._ready_problems = {}             # check -> the reason it last failed, for the log
        self._exact = {}               # path -> {method: (handler, auth, operation)}
        self._patterns = {}            # template segments -> the same, for {name} routes
        rooms = {"app": self, "zones": self.zones, "settler": self.settler,
                 "records": self.records, "audit": self.audit, "dnssec": self.dnssec,
                 "catalog": self.catalog}
        for method, template, handler, auth, operation, room in self.ROUTES:
            target = (getattr(rooms[room], handler.rpartition(".")[2]), auth, operation)
            if "{name}" in template:
                key = tuple(template.strip("/").split("/"))
                self._patterns.setdefault(key, {})[method] = target
            else:
                self._exact.setdefault(template, {})[method] = target
        self._name_at = sorted({key.index("{name}") for key in self._patterns})

    def _changed(self, zone):
        """A zone's data or configuration changed: the secondaries are told, and the
        webhook reads its configuration again."""
        self.secondaries.change(zone)
        if self.webhook:
            self.webhook.changed(zone)

    # -- routing

    def route(self, method, path):
        """(handler, needs auth, operation, template, path parameter) or ApiError 404/405."""
        methods, template, param = self._exact.get(path), path, None
        if methods is None and not path.endswith("/"):
            segments = tuple(path[1:].split("/"))
            for at in self._name_at:                    # where a template has its {name}
                key = segments[:at] + ("{name}",) + segments[at + 1:]
                if at < len(segments) and key in self._patterns:
                    methods, template = self._patterns[key], "/" + "/".join(key)
                    param = urllib.parse.unquote(segments[at])
                    break
        if methods is None:
            raise ApiError(404, "Not found")
        if method not in methods:
            error = ApiError(405, f"Method {method} not allowed on {template}",
                             headers=[("Allow", ", ".join(sorted(methods)))])
            error.template = template
            raise error
        handler, auth, operation = methods[method]
        return handler, auth, operation, template, param

    def dispatch(self, method, target, headers, body, client="-"):
        """One request in, one Response out; never raises.

        ``body`` is bytes, None (no Content-Length), or a function that reads it:
        then only handlers that take a body read it (``req.json()``), once the
        caller has passed authentication and the rate limit; other requests'
        bodies are never read, and their connection is closed after the answer.
        """
        path, _, query = target.partition("?")
        req = Request(headers, body, query, client)
        response = Response(500, INTERNAL_ERROR)
        operation = None
        gate = self.gate
        try:
            if gate.guard_host:
                gate.check_host(headers.get("Host"))
            handler, auth, operation, response.route, param = self.route(method, path)
            if auth:
                response.identity = req.identity = gate.authenticate(headers, client)
            if gate.limiter and response.route not in OPEN_ROUTES:
                # Per identity where there is one (TokenReview); else per address.
                gate.limit(("caller", response.identity if gate.reviewer else client))
            audited = operation in AUDITED and self.audit.fd is not None
            if audited:
                self.audit.check()              # 503 while the trail cannot be written
            if param is not None:
                response.zone = self.zone_name(param)
                if response.zone in self.managed.unsettled:
                    self.settler.settle_first(response.zone)
                result = handler(response.zone, req)
            else:
                result = handler(req)
            response.status, response.body = result[0], result[1]
            response.headers = result[2] if len(result) > 2 else ()
            if len(result) > 3:
                response.content_type = result[3]
            if audited and response.status < 300:
                response.headers = list(response.headers) + [
                    ("X-Request-Id", self.audit.record(method, response.route, operation,
                                                       response.zone, req))]
        except ApiError as e:
            response.status, response.headers = e.status, e.headers
            response.body = error_body(e.message, e.field, e.details)
            response.route = response.route or getattr(e, "template", None)
        except Exception:
            self.log("error", "unexpected error", method=method, path=response.route,
                     zone=response.zone, traceback=_traceback())
        if operation:
            result = "success" if response.status < 400 else "failure"
            self.metrics.count("bindcar_zone_operations_total", (operation, result))
            if operation.startswith("record_"):
                self.metrics.count("bindcar_record_operations_total",
                                   (operation.removeprefix("record_"), result))
        return response

    def record_request(self, method, route, status, seconds):
        """Count one answered request; labels are bounded: route templates, known methods."""
        method = method if method in HTTP_METHODS else "OTHER"
        route = route or "unmatched"
        self.metrics.count_and_observe(
            "bindcar_http_requests_total", (method, route, str(status)),
            "bindcar_http_request_duration_seconds", (method, route), seconds)

    @staticmethod
    def zone_name(text):
        return App.zone_name_field(text, "name")

    @staticmethod
    def zone_name_field(text, field):
        try:
            return zonefile.parse_zone_name(text, field)
        except zonefile.ZoneError as e:
            raise ApiError(400, f"Invalid zone name: {e.message}", field) from None

    # -- open endpoints

    def health(self, req):
        return 200, HEALTHY

    def ready(self, req):
        when, result = self._ready
        if result is None or time.monotonic() - when > READY_CACHE:
            result = self._check_ready()
            self._ready = (time.monotonic(), result)
        return (200 if result["ready"] else 503), json_body(result)

    def _check_ready(self):
        """The checks in fixed words, nothing an open route should tell (no address,
        port, key or path); the reason for a failed check goes to the log, once a change."""
        problems, zone_dir = {}, self.config.zone_dir
        if zone_dir and not os.access(zone_dir, os.W_OK | os.X_OK):
            problems["zone directory"] = f"{zone_dir} is not writable (or gone)"
        try:
            self.named.rndc_call("null")
        except rndc_proto.RndcError as e:
            problems["rndc"] = str(e)
        checks = ["zone directory: " + ("none (records only)" if not zone_dir else
                                        "not writable" if "zone directory" in problems
                                        else "writable"),
                  "rndc: " + ("unreachable" if "rndc" in problems else "named answers")]
        if self.catalog.name:                   # creates and deletes fail without it
            if not self.catalog.problem and "rndc" not in problems:
                self.catalog.served()           # asked now, not believed
            if self.catalog.problem:
                problems["catalog"] = self.catalog.problem
            checks.append("catalog: " + ("not kept" if "catalog" in problems else "kept"))
        if self.audit.fd is not None:
            if self.audit.broken:
                problems["audit log"] = self.audit.broken
            checks.append("audit log: " + ("not writable" if self.audit.broken else "writable"))
        for check in ("zone directory", "rndc", "catalog", "audit log"):
            if problems.get(check) != self._ready_problems.get(check):
                if check in problems:
                    self.log("warn", f"not ready: {check}", error=problems[check])
                else:
                    self.log("info", f"ready again: {check}")
        self._ready_problems = problems
        if self.config.auth_mode == "disabled":
            checks.append("auth: DISABLED (DISABLE_AUTH=true)")
        return {"ready": not problems, "checks": checks}

    def metrics_page(self, req):
        gauges = [("bindcar_zones_managed", "gauge", "Zones bindcar manages.", "",
                   len(self.managed.zones))]
        if self.catalog.name:
            gauges.append(("bindcar_catalog_members", "gauge", "Members of the catalog zone.",
                           "", len(self.catalog.members)))
        if self.config.secondaries:
            gauges.append(("bindcar_secondaries_lagging", "gauge", "Secondaries that do not "
                           "answer or lag behind the primary in a zone.", "",
                           self.roster.lagging_count()))
        gauges.append(("bindcar_app_info", "gauge", "bindcar's version.",
                       f'{{version="{VERSION}"}}', 1))
        gauges += process_gauges()
        return 200, self.metrics.render(gauges), [], "text/plain; version=0.0.4; charset=utf-8"

    def openapi(self, req):
        if not self.config.enable_docs:
            raise ApiError(404, "Not found (set BIND_ENABLE_DOCS=true to serve the API document)")
        return 200, json_body(openapi_document())

    def docs(self, req):
        if not self.config.enable_docs:
            raise ApiError(404, "Not found (set BIND_ENABLE_DOCS=true to serve the API docs)")
        return (200, docs_page(openapi_document()), [("Content-Security-Policy", DOCS_CSP)],
                "text/html; charset=utf-8")



# ---------------------------------------------------------------- named's two channels

class Named:
    """Everything bindcar says to named passes here: RNDC commands on one kept-open
    connection, UPDATEs and queries on another, each AXFR on one of its own, and the SOA
    queries to the secondaries; and here named's refusals and silences become ApiErrors.

    ``lock`` is the one lock that serialises every change to named or to the zone
    directory: whoever changes either holds it.
    """

    def __init__(self, config, log, metrics):
        self.config, self.log, self.metrics = config, log, metrics
        self.rndc = rndc_proto.RndcClient(config.rndc_host, config.rndc_port,
                                          config.rndc_algorithm, config.rndc_secret,
                                          config.rndc_timeout)
        self.rndc.late = self._late
        self.dns = self._dns_client()
        self.lock = threading.Lock()
        self.state = "not asked yet"            # for systemd's STATUS= line
        self.changed = lambda zone: None        # told of each change to a zone's data
        self._dns_address = (None, 0.0)         # named's DNS address, when a name gives it

    def _dns_client(self):
        c = self.config
        return dns_proto.DnsClient(c.update_host, c.update_port, c.update_key_name,
                                   c.update_algorithm, c.update_secret, c.update_timeout)

    def close(self):
        """Both kept-open connections; under ``lock``, so no change is cut in half."""
        self.rndc.close()
        self.dns.close()

    # -- RNDC

    def rndc_call(self, command, meanwhile=None):
        """Every RNDC command goes through here: timed and counted by verb.
        ``meanwhile``: work done while named works (RndcClient.call)."""
        verb = command.split(" ", 1)[0]
        started = time.perf_counter()
        result = "error"
        try:
            text = self.rndc.call(command, meanwhile)
            result = "success"
            return text
        except rndc_proto.RndcCommandError:
            result = "failure"
            raise
        finally:
            self.state = "unreachable" if result == "error" else "answers"
            self.metrics.count_and_observe(
                "bindcar_rndc_commands_total", (verb, result),
                "bindcar_rndc_command_duration_seconds", (verb,), time.perf_counter() - started)

    def _late(self, verb, result, err):
        """named answered a command after bindcar had given up waiting (rndc_proto's owed
        reply): what it did is known now."""
        self.log("warn", "named answered a command late", command=verb,
                 result="success" if result == "0" else err or result)

    def call_named(self, command, zone=None, meanwhile=None):
        """Run an RNDC command; transport failures become 503."""
        try:
            return self.rndc_call(command, meanwhile)
        except rndc_proto.RndcConnectionError as e:
            self.log("error", "rndc failed", command=command.split(" ", 1)[0], zone=zone,
                     error=str(e))
            raise Unreachable(e) from None

    def rndc_error(self, error, zone, action, status=409):
        """Map named's refusal of a zone command to a status, by its ``err`` text.

        ``not found`` is 404 and ``already exists`` 409; any other refusal of
        an action on a zone is ``status`` with named's reason, and with no
        action named, an unexpected failure: 500, named's text to the log only.
        """
        self.log("info" if error.err == "not found" else "warn", "named refused a command",
                 command=error.command, zone=zone, err=error.err, text=error.text)
        if error.err == "not found" and error.command != "addzone":
            return ApiError(404, f"Zone {zone} not found", details=error.text or None)
        if error.err == "already exists":
            return ApiError(409, f"Zone {zone} already exists", details=error.text or None)
        if error.err == "dynamic zone" and error.command == "reload":
            return ApiError(409, f"Zone {zone} takes dynamic updates, so named will not "
                            "reload it from its file: freeze it (POST .../freeze), edit "
                            "the file, then thaw it (POST .../thaw), which loads the edit",
                            details=error.err)
        if action:
            return ApiError(status, f"named refused to {action} zone {zone}: {error.err}",
                            details=error.text or None)
        return ApiError(500, "Internal server error")

    def zone_command(self, command, zone, action):
        """An RNDC command on ``zone``; any refusal is an ApiError (``rndc_error``)."""
        try:
            return self.call_named(command, zone)
        except rndc_proto.RndcCommandError as e:
            raise self.rndc_error(e, zone, action) from None

    def shown_zone(self, zone):
        """named's configuration of ``zone`` as statements; 404 if named lacks it."""
        text = self.zone_command(f"showzone {zone}", zone, None)
        return zonefile.parse_shown_zone(text)

    def configured(self, zone):
        """(file, type, added at run time) of named's ``zone``: from zonestatus, or while
        named has not loaded it from showzone, ``added`` then None (named cannot say);
        404 when named has no such zone."""
        try:
            fields = _status_fields(self.call_named(f"zonestatus {zone}", zone))
            return (fields.get("files", "").split(", ")[0] or None, fields.get("type"),
                    fields.get("reconfigurable via modzone") == "yes")
        except rndc_proto.RndcCommandError as e:
            if e.err != "zone not loaded":
                raise self.rndc_error(e, zone, None) from None
        statements = self.shown_zone(zone)
        return (*(zonefile.shown_option(statements, key) for key in ("file", "type")), None)

    def zone_status_text(self, zone):
        """named's zonestatus text, or for a zone it has not loaded yet (a secondary
        before its first transfer, a file that failed to load) the same fields made
        from its configuration, with ``loaded: no`` and why."""
        try:
            return self.call_named(f"zonestatus {zone}", zone)
        except rndc_proto.RndcCommandError as e:
            if e.err != "zone not loaded":
                raise self.rndc_error(e, zone, None) from None
        statements = self.shown_zone(zone)
        kind = _zone_type(zonefile.shown_option(statements, "type"))
        lines = [f"name: {zone}", f"type: {kind}"]
        path = zonefile.shown_option(statements, "file")
        if path:
            lines.append(f"files: {path}")
        lines.append("loaded: no (waiting for the first transfer from its primaries)"
                     if kind == "secondary" else
                     "loaded: no (named could not load its file; see named's log)")
        return "\n".join(lines)

    # -- DNS: UPDATE, queries, AXFR

    def dns_address(self):
        """named's DNS address as an IP, for datagrams: NSUPDATE_SERVER (or the RNDC
        host) may be a name, resolved again at most every Roster.RESOLVE_EVERY."""
        host, (address, when) = self.config.update_host, self._dns_address
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        if address is None or time.monotonic() - when > Roster.RESOLVE_EVERY:
            found = resolve_host(host)
            address = str(found[0]) if found else address
            self._dns_address = (address, time.monotonic())
        return address or "127.0.0.1"

    def source_address(self):
        """The address named sees bindcar's DNS messages come from, as an ip_address (to
        read an ACL as named would); the route's source, nothing sent."""
        address = self.dns_address()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((address, self.config.update_port))
                return ipaddress.ip_address(probe.getsockname()[0])
        except OSError:
            return ipaddress.ip_address(address)

    def send_update(self, operation, zone, add=(), **changes):
        """Every UPDATE goes through here, timed by ``operation``.  named's refusal
        (DnsUpdateError) and MessageTooLarge are the caller's to explain."""
        started = time.perf_counter()
        try:
            with self._dns_failures(operation):
                self.dns.update(zone, add=add, **changes)
            self.changed(zone)
        finally:
            self.metrics.observe("bindcar_dns_update_duration_seconds", (operation,),
                                 time.perf_counter() - started)

    def answers(self):
        """Does named answer on both channels, with anything it owed answered?  Asked
        without the lock, so that waiting on a silent named holds up no change; quiet
        (the caller says what it means)."""
        try:
            self.rndc_call("null")
            self.dns.settle()
            return True
        except (rndc_proto.RndcError, dns_proto.DnsError):
            return False

    def settle_updates(self):
        """Wait for named's answer to an UPDATE it has not answered yet (dns_proto's owed
        answer), so that a transfer shows it; 503 while named is still silent."""
        with self._dns_failures("settle"):
            self.dns.settle()

    def update_failed(self, zone):
        """named answered SERVFAIL to an UPDATE of ``zone``: 507 when the zone directory's
        disk is full (named cannot write the zone's journal), else 503."""
        full = False                    # without a zone directory, named's disk is elsewhere
        with contextlib.suppress(OSError, TypeError):
            vfs = os.statvfs(self.config.zone_dir)
            full = vfs.f_bavail * vfs.f_frsize < DISK_LOW or (vfs.f_files and not vfs.f_favail)
        self.log("error", "named failed to apply an UPDATE", zone=zone, disk_full=full)
        if full:
            return ApiError(507, f"named could not apply the change to zone {zone}: the disk "
                            "of the zone directory is full, so named cannot write the zone's "
                            "journal; free space. Nothing changed")
        return ApiError(503, f"named could not apply the change to zone {zone} (SERVFAIL); "
                        "see named's log")

    def ask(self, operation, zone, name, rtype):
        """A query of ``name`` (in ``zone``) on the kept-open connection; an error answer
        means named does not serve the zone as asked."""
        try:
            with self._dns_failures(operation):
                return self.dns.query(name, rtype)
        except dns_proto.DnsUpdateError as e:
            raise self._zone_unusable(zone, e) from None

    def transfer(self, zone):
        """The zone by AXFR, on a connection of its own: a long transfer must not hold
        up the changes waiting for the kept-open one."""
        client = self._dns_client()
        try:
            with self._dns_failures("list"):
                return client.axfr(zone)
        except dns_proto.DnsUpdateError as e:
            if e.rcode != "REFUSED":
                raise self._zone_unusable(zone, e) from None
            self.zone_status_text(zone)                     # 404 when named does not serve it
            raise ApiError(409, f"named refused bindcar a transfer of zone {zone} (REFUSED): "
                           f"its allow-transfer must allow the update key "
                           f"{self.dns.key_name!r}. bindcar adds the keys of allow-update to "
                           "an explicit allow-transfer when it creates or PATCHes a zone: a "
                           "PATCH of allowTransfer puts it right") from None
        finally:
            client.close()

    @contextlib.contextmanager
    def _dns_failures(self, operation):
        """named's DNS port unreachable, or its answer not signed as it should be: 503,
        saying what to mend (the key's name, never its secret)."""
        try:
            yield
        except (dns_proto.DnsConnectionError, dns_proto.DnsTsigError) as e:
            self.log("error", "named's DNS port failed", operation=operation, error=str(e))
            if isinstance(e, dns_proto.DnsConnectionError):
                raise ApiError(503, "named is not reachable on its DNS port",
                               details=str(e)) from None
            key = self.dns.key_name
            if e.rcode == "BADKEY":
                raise ApiError(503, f"named does not know bindcar's update key {key!r}: "
                               "include the key in named.conf (key \"...\" { algorithm ...; "
                               "secret ...; };), or set NSUPDATE_KEY_NAME to a key named "
                               "has") from None
            raise ApiError(503, f"named refused bindcar's update key {key!r}: {e}") from None

    def _zone_unusable(self, zone, error):
        """named answered a query or transfer of ``zone`` with an error: 404 when it does
        not serve the zone, 409 while it has not loaded it, else 503."""
        text = self.zone_status_text(zone)                  # 404 when named does not serve it
        loaded = _status_fields(text).get("loaded", "")
        if loaded.startswith("no"):
            return ApiError(409, f"Zone {zone} is not loaded: {loaded[2:].strip(' ()')}")
        if error.rcode == "REFUSED":
            return ApiError(409, f"named refused bindcar's query in zone {zone} (REFUSED): its "
                            "allow-query must let bindcar read the zone (a change of one "
                            "value reads its record set first)")
        self.log("error", "named answered a query with an error", zone=zone,
                 rcode=error.rcode)
        return ApiError(503, f"named answered {error.rcode} for zone {zone}; see its log")


def _status_fields(text):
    """named's zonestatus text as {"type": "primary", "files": "...", ...}."""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def _status_serial(fields):
    """zonestatus's ``serial`` (the unsigned zone's, for an inline-signed one), or None
    before the zone loads."""
    serial = fields.get("serial", "")
    return int(serial) if serial.isascii() and serial.isdigit() else None


def _zone_type(text):
    return zonefile.ZONE_TYPES.get(text or "", text or "unknown")



# ---------------------------------------------------------------- zones

class Managed:
    """The zones bindcar manages, and how it knows them: a zone is bindcar's when named
    added it at run time from bindcar's file, ``<zone>.zone`` in BIND_ZONE_DIR (or, as
    the Rust bindcar makes secondaries, with no file at all).  Every zone file bindcar
    writes or removes is written or removed here."""

    def __init__(self, config, log, named):
        self.config, self.log, self.named = config, log, named
        self.zones = set()                      # the zones bindcar manages
        self.primaries = set()                  # those of them that are primary zones
        self.checked = threading.Event()        # the zones have been checked against named
        self.unsure = set()                     # listed zones named would not say more of
        self.unsettled = set()                  # zones a create or delete left unknown
        self.deleted = {}                       # zone -> when bindcar last deleted it

    def add(self, zone, primary):
        self.zones.add(zone)
        self.deleted.pop(zone, None)
        if primary:
            self.primaries.add(zone)

    def forget_deleted(self, zone):
        """``zone`` deleted: noted for a while (``deleted_lately``)."""
        self.discard(zone)
        now = time.monotonic()
        self.deleted[zone] = now
        for old in [z for z, when in self.deleted.items() if now - when > DELETE_RECHECK]:
            del self.deleted[old]

    def deleted_lately(self):
        """The zones deleted within DELETE_RECHECK seconds and not created since.  named
        answers delzone before its NZD forgets the zone: killed in between, it has the
        zone again when it starts (with no file: bindcar removed it)."""
        now = time.monotonic()
        return [z for z, when in self.deleted.items()
                if now - when <= DELETE_RECHECK and z not in self.zones]

    def discard(self, zone):
        self.zones.discard(zone)
        self.primaries.discard(zone)
        self.unsure.discard(zone)

    # -- the files

    def path(self, zone):
        """The zone's file in BIND_ZONE_DIR; 409 when a symbolic link there leads out,
        503 without a zone directory (no zone is bindcar's to create or change)."""
        if not self.config.zone_dir:
            raise ApiError(503, f"bindcar has no zone directory, so it cannot create, change "
                           f"or delete zone {zone}: set BIND_ZONE_DIR to the directory named "
                           "reads zone files from (records work without one)",
                           "BIND_ZONE_DIR")
        try:
            return zonefile.zone_file_path(self.config.zone_dir, zone)
        except ValueError:
            raise ApiError(409, f"{zonefile.zone_file_name(zone)} in the zone directory is "
                           "a symbolic link that leads out of it; bindcar will not use it")

    def write(self, name, path, text, sync_dir=True):
        """The zone file, fsync'd, and the directory unless ``sync_dir`` is False (then
        ``fsync_dir`` before anything is acknowledged); 507 when the disk is full."""
        try:
            zonefile.write_zone_file(path, text, sync_dir=sync_dir)
        except OSError as e:
            raise self.write_error(name, e) from None

    def fsync_dir(self):
        """fsync the zone directory, for a name ``write`` left unsynced; the OSError or
        None."""
        try:
            zonefile.fsync_directory(self.config.zone_dir)
        except OSError as e:
            return e
        return None

    def write_error(self, name, error):
        self.log("error", "cannot write zone file", zone=name, error=error.strerror)
        status = 507 if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 500
        return ApiError(status, f"Cannot write the zone file of {name}: "
                        f"{error.strerror or 'I/O error'}")

    def remove(self, name):
        """Every file of the zone (file, journals, signed copies), as their names; a
        failure is logged."""
        try:
            return zonefile.remove_zone_files(self.config.zone_dir, name)
        except OSError as e:
            self.log("error", "cannot remove zone files", zone=name, error=e.strerror)
            return []

    def remove_deleted(self, zone):
        """The files of a zone named has just deleted, as their names; 500 if they stay."""
        try:
            return zonefile.remove_zone_files(self.config.zone_dir, zone)
        except OSError as e:
            self.log("error", "zone deleted from named, but its files remain",
                     zone=zone, error=e.strerror)
            raise ApiError(500, f"Zone {zone} was deleted from named, but removing its "
                           "files failed; see the log") from None

    def begin_delete(self, zone, path):
        """The note that a delete of ``zone`` has begun (zonefile.mark_deleting), where
        its file at ``path`` lacks bindcar's marker (named rewrote it): with the marker,
        the next start's check finds what a crash left.  A disk that cannot take the
        note does not stop the delete (a full disk is when zones go)."""
        if path is None or zonefile.marked_zone(path) == zone:
            return
        try:
            zonefile.mark_deleting(self.config.zone_dir, zone)
        except OSError as e:
            self.log("warn", "cannot note the delete's start; a crash mid-delete is then "
                     "found by the zone file's marker only", zone=zone, error=e.strerror)

    def end_delete(self, zone):
        """The note of ``begin_delete`` gone; True unless it stays (logged)."""
        try:
            zonefile.unmark_deleting(self.config.zone_dir, zone)
            return True
        except OSError as e:
            self.log("error", "cannot remove the note of a delete", zone=zone,
                     error=e.strerror)
            return False

    def catalog_path(self, catalog):
        """The catalog zone's file, ``<catalog>.catalog``: never taken for a managed zone."""
        return os.path.join(self.config.zone_dir, catalog + CATALOG_SUFFIX)

    def remove_catalog(self, catalog):
        """The catalog zone's file and journal, to make it anew."""
        for path in (self.catalog_path(catalog), self.catalog_path(catalog) + ".jnl"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def clear_leftovers(self, name, found):
        """Files of a zone named does not serve: bindcar's own, left by an earlier crash,
        go (with their journal: it would be replayed onto the new zone); anything else
        may be another zone's live data (named.conf's ``example.com`` may keep its data
        in ``example.zone``), so the create is refused naming it, and nothing is touched."""
        path = self.path(name)
        if zonefile.marked_zone(path) != name:
            culprit = os.path.basename(path) if os.path.basename(path) in found else found[0]
            self.log("warn", "create refused: a file bindcar did not write is in the way",
                     zone=name, file=culprit)
            raise ApiError(409, f"Cannot create zone {name}: {culprit} is in the zone "
                           "directory and bindcar did not write it for this zone; it may be "
                           "another zone's data. Move it away first")
        removed = zonefile.remove_zone_files(self.config.zone_dir, name)
        self.log("warn", "replaced files bindcar left for a zone named does not serve",
                 zone=name, files=removed)

    # -- whose zone is it

    def require(self, zone, deleting=False):
        """The zone's file if bindcar manages the zone (None for a file-less secondary);
        409 for any other zone, named.conf's above all.

        A managed zone was added at run time (zonestatus: ``reconfigurable via
        modzone: yes``) with bindcar's file, compared with the directory resolved
        (the Rust bindcar resolves a symlinked one), or with none.  A zone named has
        not loaded cannot be asked; it is bindcar's when bindcar made it (it is in
        the zone list, or its file carries bindcar's marker), and one with nothing on
        disk may be deleted: a file-less secondary, or a zone whose file at bindcar's
        path is gone (a create cut short by a power loss leaves named such a zone).

        Once the start's check is done, a listed zone is bindcar's by named's word or
        its own making, and is not asked about again (``zonestatus`` costs named more
        the more zones it holds: 20 ms at 100,000); named is only asked whether it
        answers (``null``), so that a named gone silent is sent nothing it would act on
        later.
        """
        if zone == self.config.catalog:
            raise ApiError(409, f"Zone {zone} is bindcar's catalog zone: it changes with "
                           "the zones bindcar creates and deletes")
        path = self.path(zone)
        if zone in self.zones and self.checked.is_set() and zone not in self.unsure:
            self.named.call_named("null", zone)
            return path
        shown, kind, added = self.named.configured(zone)
        fileless = shown is None and kind in ("secondary", "slave")
        if fileless or _same_file(shown, path):
            if added is None:
                nothing_on_disk = fileless or not os.path.lexists(path)
                added = zone in self.zones or zonefile.marked_zone(path) == zone or \
                    (nothing_on_disk and deleting) or None
            if added:
                return None if fileless else path
            if added is None:
                raise ApiError(409, f"Zone {zone} is not loaded, so named cannot tell whether "
                               "it was added at run time or comes from named.conf; retry "
                               "once it has loaded")
        raise ApiError(409, f"Zone {zone} is not managed by bindcar (named.conf's, or its "
                       f"file is not {os.path.basename(path)} in bindcar's zone directory)")

    # -- at start

    def scan(self):
        """Know the zones whose files are in the directory; clear a crash's temp files.

        A file's zone is the one its name says (the Rust bindcar's files, and
        files named has rewritten, are named so too); only a long zone's
        shortened file name (``+`` and a hash) is read, for the MARKER line
        that names its zone.  Nothing else is opened: at 100,000 zones the
        directory listing is the start's whole cost.  Which of these zones named
        really serves from these files, ``check_all`` asks.
        """
        for name in zonefile.remove_stale_temp_files(self.config.zone_dir):
            self.log("warn", "removed a temporary file left by an earlier crash", file=name)
        for zone in zonefile.zones_being_deleted(self.config.zone_dir):
            self.unsettled.add(zone)
            self.log("warn", "a delete cut short by a crash is finished once named answers",
                     zone=zone)
        suffix = zonefile.ZONE_SUFFIX
        for name in os.listdir(self.config.zone_dir):
            if not name.endswith(suffix) or name.startswith("."):
                continue
            if "+" in name:
                zone = zonefile.marked_zone(os.path.join(self.config.zone_dir, name))
            else:
                try:
                    zone = zonefile.parse_zone_name(name[:-len(suffix)])
                except zonefile.ZoneError:
                    continue
            if zone and zonefile.zone_file_name(zone) == name and \
                    zone != self.config.catalog and zone not in self.unsettled:
                self.zones.add(zone)

    def check_all(self, stopped):
        """Once named answers: forget (and log) zone files for zones it does not serve,
        note the primary zones; if named goes away half-way, wait and go on where it
        stopped.  Then ``checked`` is set: the catalog can be kept."""
        while not stopped.is_set():
            try:
                self.named.rndc_call("null")
                break
            except rndc_proto.RndcError:
                stopped.wait(RECONCILE_RETRY)
        unchecked, began = sorted(self.zones.copy()), time.monotonic()
        count = len(unchecked)
        while unchecked and not stopped.is_set():
            zone = unchecked[0]
            with self.named.lock:               # a DELETE of the zone waits, or went first
                try:
                    answered = zone not in self.zones or self._check_listed(zone)
                except ApiError:
                    answered = False
            if answered:
                unchecked.pop(0)
            else:
                stopped.wait(RECONCILE_RETRY)   # named is away: the same zone again
        if not stopped.is_set():
            self.log("info", "zones checked against named", listed=count,
                     managed=len(self.zones), seconds=round(time.monotonic() - began, 3))
        self.checked.set()

    def _check_listed(self, zone):
        """Is ``zone``, listed from its file, served by named from that file as a run-time
        zone?  Drops it from the list when not, and notes the primary zones (a primary
        named has not loaded too: its catalog membership does not hang on its load).
        False when named does not answer."""
        try:
            path = self.path(zone)
            text = self.named.rndc_call(f"zonestatus {zone}")
        except ApiError:                        # its file is a symbolic link leading out
            self.zones.discard(zone)
            return True
        except rndc_proto.RndcCommandError as e:
            if e.err == "zone not loaded":      # a secondary before its transfer, or a
                text = self.named.zone_status_text(zone)    # primary whose file failed
            elif e.err == "not found":
                self.zones.discard(zone)
                if zonefile.marked_zone(path) == zone:    # a create or delete cut short
                    self.log("warn", "removing files bindcar wrote for a zone named does "
                             "not serve (left by a crash)", zone=zone,
                             file=os.path.basename(path))
                    self.remove(zone)
                else:
                    self.log("info", "not listed: a zone file bindcar did not write, "
                             "for a zone named does not serve", file=os.path.basename(path))
                return True
            else:                               # refused otherwise: asked again each time
                self.unsure.add(zone)
                return True
        except rndc_proto.RndcError:
            return False
        fields = _status_fields(text)
        if not _same_file(fields.get("files", "").split(", ")[0], path) or \
                fields.get("reconfigurable via modzone") == "no":
            self.zones.discard(zone)
            self.log("info", "not listed: named serves this zone from named.conf or from "
                     "another file", zone=zone, file=os.path.basename(path))
        elif _zone_type(fields.get("type")) == "primary":
            self.primaries.add(zone)
        return True


def _same_file(shown, path):
    """Is ``shown``, a file as named's configuration names it, bindcar's ``path``?
    Directories are compared resolved: BIND_ZONE_DIR may be a symbolic link."""
    return bool(shown) and os.path.isabs(shown) and os.path.join(
        os.path.realpath(os.path.dirname(shown)), os.path.basename(shown)) == path


class Zones:
    """The zone resource: create (file, ``addzone``, catalog member, and the undo of
    each), read, PATCH, delete, and the RNDC actions on a zone or on named itself."""

    def __init__(self, config, log, named, managed, catalog, settler):
        self.config, self.log, self.named = config, log, named
        self.managed, self.catalog, self.settler = managed, catalog, settler

    # -- create

    def create_zone(self, req):
        try:
            zone = zonefile.parse_zone(req.json())
            if zone.type == "primary":
                zone = zonefile.with_transfer_defaults(
                    zone, self.config.transfer_key,
                    self.catalog.roster.transfer_addresses()
                    if self.config.secondaries else None)
            path = self.managed.path(zone.name)
            clause = zonefile.render_zone_clause(zone, path)
            text = zonefile.render_zone_file(zone) if zone.type == "primary" else None
        except zonefile.ZoneError as e:
            raise ApiError(400, str(e), e.field) from None
        if zone.name == self.catalog.name:
            raise ApiError(409, f"Zone {zone.name} is bindcar's catalog zone")
        with self.named.lock:
            if zone.name in self.managed.unsettled:
                self.settler.settle(zone.name)
            if zone.type == "primary":
                self.catalog.require_kept()
            self._add(zone, path, clause, text)
            if zone.type == "primary" and self.catalog.name:
                self._join_catalog(zone.name)
        if zone.type == "primary":
            self.named.changed(zone.name)
        self.log("info", "zone created", zone=zone.name, type=zone.type, **req.who())
        req.audit = {"zone": zone.name, "changes": [f"create {zone.type} zone"],
                     "serialAfter": zone.soa.serial if zone.soa else None}
        return 201, _zone_response(f"Zone {zone.name} created successfully")

    def _add(self, zone, path, clause, text):
        """Write the zone file, then ``addzone``; nothing of a live zone is ever touched.

        Files of this name already in the directory are only read about: named
        says whether they are a live zone's (409) or left by a crash (replaced).
        Otherwise the new file is hard-linked into place, which cannot clobber,
        and ``already exists`` from named (the zone lives elsewhere) removes it.
        The file's data is fsync'd before it is linked; the directory's fsync runs
        while named adds the zone (the create is acknowledged only once it is done,
        and undone if it failed).
        """
        name = zone.name
        if not self.managed.end_delete(name):   # a note left would undo this zone at start
            raise ApiError(500, f"Cannot create zone {name}: the note of its earlier delete "
                           "cannot be removed; see the log")
        found = [f for f in zonefile.zone_file_names(name)
                 if os.path.lexists(os.path.join(self.config.zone_dir, f))]
        if found:
            self._refuse_if_served(name)
            self.managed.clear_leftovers(name, found)
        synced = []                                       # the fsync's error, or None

        def sync():
            synced.append(self.managed.fsync_dir())

        if text is not None:
            self.managed.write(name, path, text, sync_dir=False)
        try:
            self.named.call_named(f'addzone "{name}" {clause}', name,
                                  meanwhile=None if text is None else sync)
        except rndc_proto.RndcCommandError as e:          # e.g. an unknown dnssec-policy
            self.managed.remove(name)                     # every file of this name is ours
            if e.err == "already exists":
                raise ApiError(409, f"Zone {name} already exists") from None
            if e.err == "not found" and zone.dnssec_policy:
                raise ApiError(400, f"named has no dnssec-policy {zone.dnssec_policy!r}: its "
                               "own are default, insecure and none; any other must be "
                               f'defined in named.conf (dnssec-policy "{zone.dnssec_policy}"'
                               " { ... };)", "dnssecPolicy") from None
            raise self.named.rndc_error(e, name, "add", status=400) from None
        except Unreachable as e:
            if e.sent:
                self._roll_back_addzone(name, path)
            else:
                self.managed.remove(name)           # named never heard of it
            raise
        if synced and synced[0]:                # named has the zone; the disk not its file
            self._roll_back_addzone(name, path)
            raise self.managed.write_error(name, synced[0])
        self.managed.add(name, zone.type == "primary")

    def _refuse_if_served(self, name):
        """409 when named serves the zone whose files these are."""
        try:
            self.named.call_named(f"zonestatus {name}", name)
        except rndc_proto.RndcCommandError as e:
            if e.err == "not found":
                return
            if e.err != "zone not loaded":                 # a secondary before its transfer
                raise self.named.rndc_error(e, name, None) from None
        raise ApiError(409, f"Zone {name} already exists")

    def _roll_back_addzone(self, name, path):
        """named stopped answering mid-addzone, or the disk failed after it: undo
        whatever named may have done, then ours (``settle``)."""
        self.managed.unsettled.add(name)
        self.settler.settle_now(name, "rolled back a create that failed part-way")

    def _join_catalog(self, name):
        """A new primary zone becomes a member, or the create is undone: all or nothing."""
        try:
            self.catalog.add(name)
        except ApiError:
            self.managed.discard(name)
            self.managed.unsettled.add(name)
            self.settler.settle_now(name, "the catalog did not take the new zone; the "
                                    "create is undone")
            raise

    # -- read

    LIST_PARAMS = ("limit", "after", "type", "suffix")     # of GET /api/v1/zones

    def list_zones(self, req):
        """The zones, sorted; ``?type=primary|secondary``, ``?suffix=`` (the zone and
        those below it), and pages: ``?limit=N&after=<zone>``, ``count`` the total that
        match, ``next`` the cursor while more remain."""
        params = req.params(self.LIST_PARAMS)
        zones = sorted(self.managed.zones.copy())    # one C call: safe while creates run
        kind = params.get("type")
        if kind not in (None, "primary", "secondary"):
            raise ApiError(400, "type: must be primary or secondary", "type")
        if kind:
            primaries = self.managed.primaries.copy()
            zones = [z for z in zones if (z in primaries) == (kind == "primary")]
        if "suffix" in params:
            suffix = App.zone_name_field(params["suffix"], "suffix")
            zones = [z for z in zones if z == suffix or z.endswith("." + suffix)]
        answer = {"zones": zones, "count": len(zones)}
        if "after" in params or "limit" in params:
            start = bisect.bisect_right(zones, App.zone_name_field(params["after"], "after")) \
                if "after" in params else 0
            limit = _limit(params.get("limit"))
            answer["zones"] = zones[start:start + limit]
            if start + limit < len(zones):
                answer["next"] = answer["zones"][-1]
        return 200, json_body(answer)

    def get_zone(self, zone, req):
        fields = _status_fields(self.named.zone_status_text(zone))
        info = {"name": zone, "zoneType": _zone_type(fields.get("type"))}
        if _status_serial(fields) is not None:
            info["serial"] = _status_serial(fields)
        if fields.get("files"):
            info["filePath"] = fields["files"].split(", ")[0]
        return 200, json_body(info), [_etag(info["serial"])] if "serial" in info else []

    def zone_status(self, zone, req):
        text = self.named.zone_status_text(zone)
        serial = _status_serial(_status_fields(text))
        return 200, _zone_response(f"Zone {zone} status retrieved", text), \
            [_etag(serial)] if serial is not None else []

    # -- change, delete

    def modify_zone(self, zone, req):
        try:
            update = zonefile.parse_zone_update(req.json())
        except zonefile.ZoneError as e:
            raise ApiError(400, str(e), e.field) from None
        if update.allow_transfer is not None:   # secondaries transfer every primary by it
            update = update._replace(allow_transfer=zonefile.with_transfer_key(
                update.allow_transfer, self.config.transfer_key))
        serials = if_match(req)
        with self.named.lock:
            self.managed.require(zone)
            serial = self._serial(zone)
            if serials and serial is None:
                raise ApiError(412, f"Zone {zone} has no serial yet (named has not loaded "
                               "it): nothing changed", "If-Match")
            if serials and serial not in serials:   # modzone leaves the serial as it is
                raise precondition_failed(zone, serial)
            try:
                clause = zonefile.patch_zone_clause(self.named.shown_zone(zone), update)
            except zonefile.ZoneError as e:
                raise ApiError(400, str(e), e.field) from None
            self.named.zone_command(f'modzone "{zone}" {clause}', zone, "modify")
        self.named.changed(zone)                # a secondary it let in may transfer now
        self.log("info", "zone modified", zone=zone)
        req.audit = {"changes": [f"modzone {name}: {list(value)}" for name, value in
                                 update._asdict().items() if value is not None],
                     "serialBefore": serial, "serialAfter": serial}
        return 200, _zone_response(f"Zone {zone} modified successfully"), \
            [_etag(serial)] if serial is not None else []

    def _serial(self, zone):
        """The zone's SOA serial as named reports it (zonestatus), None before it loads."""
        return _status_serial(_status_fields(self.named.zone_status_text(zone)))

    def delete_zone(self, zone, req):
        """The catalog member goes first, then the zone: a secondary drops it.  If named
        then keeps the zone, the member comes back; if named goes silent in between, the
        next start (or POST /api/v1/catalog/reconcile) puts the catalog right."""
        with self.named.lock:
            path = self.managed.require(zone, deleting=True)
            member = self.catalog.name and zone in self.managed.primaries
            if member:
                self.catalog.require_kept()
            self.managed.begin_delete(zone, path)
            try:
                text = self._delete(zone, member)
                self.managed.forget_deleted(zone)
                removed = path and self.managed.remove_deleted(zone)    # file-less: none
            finally:
                if zone not in self.managed.unsettled:  # done, or the zone stays
                    self.managed.end_delete(zone)
        self.log("info", "zone deleted", zone=zone, files=removed, **req.who())
        return 200, _zone_response(f"Zone {zone} deleted successfully", text or None)

    def _delete(self, zone, member):
        """The member, then the zone; named's text.  Raises with the zone as it was (its
        member back), or with the zone unsettled (``settle``) when named went silent."""
        owner = self.catalog.members.get(zone)
        if member:
            try:
                self.catalog.remove(zone)
            except ApiError:
                self.catalog.undo(self.catalog.add, zone, owner)      # its answer may be lost
                raise
        try:
            return self.named.zone_command(f"delzone {zone}", zone, "delete")
        except ApiError as e:
            deleted = e.status == 503 and self._deleted_after_all(zone)
            if deleted is None:                 # unknown: finished when named answers again
                self.managed.unsettled.add(zone)
                raise
            if not deleted:                     # the zone stays, so does its member
                if member:
                    self.catalog.undo(self.catalog.add, zone, owner)
                raise
        return None                             # named deleted it before going silent

    def _deleted_after_all(self, zone):
        """named went silent after ``delzone``: did it delete the zone? Asks once more
        (after the delzone's own late answer, when it is still owed); None while named
        does not answer."""
        try:
            self.named.rndc_call(f"zonestatus {zone}")
        except rndc_proto.RndcCommandError as e:
            if e.err == "not found":
                self.log("warn", "named deleted the zone before its answer was lost",
                         zone=zone)
                return True
        except rndc_proto.RndcError:
            self.log("error", "named did not answer delzone; the delete is finished when it "
                     "answers again", zone=zone)
            return None
        return False

    # -- RNDC actions

    def _action(self, zone, command, message, locked=True, managed=False):
        """One RNDC command on a zone, under the lock when it changes named; ZoneResponse.

        ``managed``: only on a zone bindcar manages.  freeze and thaw make named
        rewrite the zone's file in its own format (an operator's comments go).
        """
        with self.named.lock if locked else contextlib.nullcontext():
            if managed:
                self.managed.require(zone)
            text = self.named.zone_command(f"{command} {zone}", zone, command)
        if command in ("reload", "thaw", "notify"):
            self.named.changed(zone)            # its data may have changed: NOTIFY
        return 200, _zone_response(message.format(zone=zone), text)

    def reload_zone(self, zone, req):
        return self._action(zone, "reload", "Zone {zone} reloaded successfully")

    def freeze_zone(self, zone, req):
        return self._action(zone, "freeze", "Zone {zone} frozen successfully", managed=True)

    def thaw_zone(self, zone, req):
        return self._action(zone, "thaw", "Zone {zone} thawed successfully", managed=True)

    def notify_zone(self, zone, req):
        return self._action(zone, "notify", "Notify sent for zone {zone}", locked=False)

    def retransfer_zone(self, zone, req):
        return self._action(zone, "retransfer", "Retransfer initiated for zone {zone}")

    def server_status(self, req):
        return 200, json_body({"status": self.named.zone_command("status", None, None)})

    def server_reload(self, req):
        with self.named.lock:
            text = self.named.zone_command("reload", None, "reload")
        return 200, _zone_response("Server reloaded successfully", text)


MAX_PAGE = 10000                # ?limit= of a zone or record listing


def _limit(text):
    """?limit=: 1 to MAX_PAGE; the whole list when not given."""
    if text is None:
        return MAX_PAGE * 10**6
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or \
            not 1 <= int(text) <= MAX_PAGE:
        raise ApiError(400, f"limit: must be a whole number from 1 to {MAX_PAGE}", "limit")
    return int(text)


def _zone_response(message, details=None):
    """ZoneResponse, ``details`` always present (``null`` when named said nothing)."""
    return json_body({"success": True, "message": message, "details": details or None})



class Settler:
    """What named left unknown, settled: a create or delete of a zone whose outcome is
    unknown (named went silent, or died, mid-change) is made absent as soon as named
    answers again, and a member change left unknown has the catalog checked.  Every
    zone's settling is tried first by any request for the zone, then every
    SETTLE_INTERVAL in the background, and on POST /api/v1/catalog/reconcile."""

    def __init__(self, log, named, managed, catalog):
        self.log, self.named, self.managed, self.catalog = log, named, managed, catalog

    def settle(self, zone):
        """Finish a create or delete of ``zone`` whose outcome named left unknown (it went
        silent, or died, mid-change): the zone made absent, its create undone or its
        delete finished, whichever it was.  Under the lock; 503 while named is still
        silent, and then it is tried again (``settle_all``) until named answers.

        named holds the zone as bindcar sent it (its file bindcar's path): it is
        deleted; any other zone of this name (named.conf's) is left alone.  Then
        bindcar's files of it go, it is no longer listed, and its catalog member
        goes.  Nothing is sent before named has answered what it still owed
        (rndc_proto, dns_proto): a command named runs late cannot undo this.
        True when anything was left to undo.
        """
        path = self.managed.path(zone)
        try:
            shown, _, added = self.named.configured(zone)
        except ApiError as e:
            if e.status != 404:
                raise
            shown = added = None                        # named does not have it
        ours = _same_file(shown, path) and added is not False   # not loaded: can't say
        if ours:
            try:
                self.named.zone_command(f"delzone {zone}", zone, "delete")
            except ApiError as e:
                if e.status != 404:
                    raise
        elif shown is not None:
            self.log("warn", "named serves a zone of this name that is not the one bindcar "
                     "sent: left alone", zone=zone)
        listed = zone in self.managed.zones
        self.managed.discard(zone)
        removed = self.managed.remove(zone)     # files at bindcar's path: named's no longer
        member = self.catalog.name and zone in self.catalog.members
        if member:
            self.catalog.undo(self.catalog.remove, zone)
        self.managed.unsettled.discard(zone)
        self.managed.end_delete(zone)
        return bool(ours or listed or removed or member)

    def settle_now(self, zone, message):
        """``settle`` at once if named answers; else it is left to ``settle_all``."""
        try:
            if self.settle(zone):
                self.log("warn", message, zone=zone)
        except ApiError as e:
            self.log("error", "named went silent mid-change: the zone is settled (its create "
                     "undone, or its delete finished) when named answers again", zone=zone,
                     error=e.details or e.message)

    def settle_first(self, zone):
        """A request for a zone whose last change named left unknown settles it first;
        503 while named is still silent (found out without holding the lock)."""
        if not self.named.answers():
            raise ApiError(503, "named is not reachable over RNDC", details=f"named has "
                           f"not answered since a change of zone {zone} was sent; it is "
                           "settled once named answers")
        with self.named.lock:
            if zone in self.managed.unsettled:
                self.settle(zone)

    def settle_all(self):
        """Every zone left unknown, then the catalog if a member change was: run under the
        lock whenever named may answer again.  503 while it does not."""
        self._settle_zones()
        if self.catalog.unsure and not self.catalog.problem:
            self.catalog.reconcile()

    def _settle_zones(self):
        for zone in sorted(self.managed.unsettled):
            if self.settle(zone):
                self.log("warn", "settled a change named had left unknown: the zone is "
                         "absent", zone=zone)

    def repair(self, req):
        """POST /api/v1/catalog/reconcile: whatever named left unknown settled, then the
        catalog's invariant made true again, now."""
        if not self.catalog.name:
            raise ApiError(404, "No catalog zone: set BIND_CATALOG_ZONE to keep one")
        with self.named.lock:
            self._settle_zones()
            added, removed = self.catalog.reconcile()
        return 200, json_body({"zone": self.catalog.name, "added": added, "removed": removed})


# ---------------------------------------------------------------- records

class Serials:
    """ETags are SOA serials (``"2026120601"``): what a GET read, what a change made.
    If-Match is the zone's SOA as read at that serial, required by the change's UPDATE
    (RFC 2136 §2.4.2), so that named itself refuses a change to a zone changed since:
    412, nothing changed.  The SOA last read is kept per zone, a hint only (named
    checks it), so that a change that follows a change reads nothing first.

    An inline-signed zone serves its signed copy, while an UPDATE's prerequisites see
    the unsigned zone, whose serial named gives in zonestatus: its ETag is that serial,
    and the SOA required is the served one with it."""

    def __init__(self, named, auditing=False):
        self.named, self.auditing = named, auditing
        self.soas = {}                          # zone -> its SOA as bindcar last read it
        self.inline = {}                        # zone -> is it inline-signed

    def before(self, req, zone, expect, operation):
        """The serial before a change, for the audit trail (read only when one is kept)."""
        if self.auditing:
            soa = expect[0] if expect else self.read(zone, operation)
            req.audit = {"serialBefore": _soa_serial(soa)}

    def after(self, req, zone, operation, changes):
        """The ETag header after a change (none when named does not say: the change is
        made); for the trail, the serial and what changed."""
        try:
            header = self.etag(zone, operation)
        except ApiError:
            header = []
        if self.auditing:
            soa = self.soas.get(zone)
            req.audit = {**(req.audit or {}), "changes": changes,
                         "serialAfter": _soa_serial(soa) if header and soa else None}
        return header

    def read(self, zone, operation):
        soa = next((r for r in self.named.ask(operation, zone, zone, "SOA")
                    if r.type == "SOA"), None)
        if soa is None:
            raise ApiError(503, f"named gave no SOA record for zone {zone}")
        if self._inline(zone):
            raw = _status_serial(_status_fields(self.named.zone_status_text(zone)))
            fields = soa.value.split()
            if raw is not None and len(fields) == 7:
                soa = soa._replace(value=" ".join(fields[:2] + [str(raw)] + fields[3:]))
        self.soas[zone] = soa
        return soa

    def listed(self, zone, soa, operation):
        """The ETag's serial of a listing whose SOA is ``soa``."""
        if self._inline(zone):
            return _soa_serial(self.read(zone, operation))
        self.soas[zone] = soa
        return _soa_serial(soa)

    def _inline(self, zone):
        if zone not in self.inline:
            fields = _status_fields(self.named.zone_status_text(zone))
            self.inline[zone] = fields.get("inline signing") == "yes"
        return self.inline[zone]

    def etag(self, zone, operation):
        """The ETag header of the zone as it is now (after a change)."""
        return [_etag(_soa_serial(self.read(zone, operation)))]

    def expected(self, zone, req, operation):
        """(the SOA an If-Match asks the UPDATE to require, the serials it names), or
        None (no If-Match, or ``*``); 412 at once when the serial is not one of them."""
        serials = if_match(req)
        if not serials:
            return None
        soa = self.soas.get(zone)
        if soa is None or _soa_serial(soa) not in serials:
            soa = self.read(zone, operation)
        if _soa_serial(soa) not in serials:
            raise precondition_failed(zone, _soa_serial(soa))
        return soa, serials

    def recheck(self, zone, expect, operation):
        """named refused a prerequisite (NXRRSET) of an UPDATE that required
        ``expect``: 412 when the zone's serial is none of the ETags given; what to
        require instead when the SOA changed within them (send again); None when the
        SOA was not what failed."""
        soa, serials = self.read(zone, operation), expect[1]
        if _soa_serial(soa) not in serials:
            raise precondition_failed(zone, _soa_serial(soa))
        return (soa, serials) if soa.value != expect[0].value else None


_ETAG = re.compile(r'\s*(?:W/)?"([0-9]{1,10})"\s*\Z')


def _etag(serial):
    return ("ETag", f'"{serial}"')


def if_match(req):
    """The serials If-Match names: None without the header, () for ``*``."""
    value = req.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None if value is None else ()
    serials = [_ETAG.match(part) for part in value.split(",")]
    if not all(serials):
        raise ApiError(400, 'If-Match: must be "*" or ETags this API gave, each the zone\'s '
                       'SOA serial in quotes ("2026120601"), comma-separated', "If-Match")
    return tuple(int(m.group(1)) for m in serials)


def if_none_match(req):
    """If-None-Match: ``*`` (only where nothing is) is the one value taken."""
    value = req.headers.get("If-None-Match")
    if value is not None and value.strip() != "*":
        raise ApiError(400, 'If-None-Match: only "*" is taken (create only where the name '
                       "has no record of that type)", "If-None-Match")
    return value is not None


def precondition_failed(zone, serial):
    return ApiError(412, f"Zone {zone} changed since that ETag: its SOA serial is now "
                    f"{serial}; nothing changed. Read it again, then send the change with "
                    f'If-Match: "{serial}"', "If-Match", details={"serial": serial},
                    headers=[_etag(serial)])


class Records:
    """The records of a zone, changed by DNS UPDATE (RFC 2136) and read by AXFR on named's
    DNS port, signed with the update key.  Every change holds the app's one lock, so a
    zone being deleted and records being added to it never interleave."""

    PARAMS = ("name", "type", "all", "limit", "after")     # of GET .../records

    def __init__(self, config, log, named):
        self.config, self.log, self.named = config, log, named
        self.serials = Serials(named, bool(config.audit_log))

    def add(self, zone, req):
        """POST: one record.  Nothing joins a CNAME, and a CNAME goes only where its name
        is unused: named would ignore either without a word (RFC 2136 §3.4.2.2)."""
        self._refuse_catalog(zone)
        given = req.json()
        record = _parse(zonefile.parse_record, given, zone)
        absent = if_none_match(req)
        with self.named.lock:
            expect = self.serials.expected(zone, req, "add")
            self.serials.before(req, zone, expect, "add")
            there = absent and [r for r in self.named.ask("add", zone, record.owner,
                                                          record.type)
                                if (r.name, r.type) == (record.owner, record.type)]
            if there:
                raise ApiError(412, f"{record.owner} has {record.type} data already "
                               "(If-None-Match: *): nothing changed", "If-None-Match")
            if record.type == "CNAME":
                self._add_cname(zone, record, expect)
            else:
                self.update(zone, "add", add=[record], fields=["value"], expect=expect,
                            forbid=[(record.owner, "CNAME")] + (
                                [(record.owner, record.type)] if absent else []),
                            unmet={"YXRRSET": ApiError(
                                409, f"{record.owner} has a CNAME (or, with If-None-Match, "
                                f"{record.type} data), which it cannot have beside: nothing "
                                "changed", "name")})
            etag = self.serials.after(req, zone, "add", [f"add {_record_text(record, True)}"])
        self.log("info", "record added", zone=zone, record=_record_text(record), **req.who())
        return 201, _record_response(f"Record added to zone {zone}", zone, record=_echo(
            given, ("name", "type", "value"), ttl=record.ttl)), etag

    def replace(self, zone, req):
        """PUT: one value by another, in one UPDATE that requires the record set as it was
        read (404 when the current value is not in it: nothing changes).  The new value
        goes in before the current one goes out, so that a record set named never lets
        go empty (the apex NS) is replaced, not kept beside it; the TTL alone is
        changed by a delete, then the add."""
        self._refuse_catalog(zone)
        given = req.json()
        current, new = _parse(zonefile.parse_record_update, given, zone)
        old = (current.owner, current.type, current.rdata)
        missing = ApiError(404, f"Record {_record_text(current)} not found in zone {zone}: "
                           "nothing changed", "currentValue")
        same = current.rdata == new.rdata
        with self.named.lock:
            expect = self.serials.expected(zone, req, "update")
            self.serials.before(req, zone, expect, "update")
            self.update(zone, "update", add=[new], fields=["newValue"], expect=expect,
                        require=self._set_holding(zone, "update", old, missing),
                        delete=[old] if same else [], then_delete=[] if same else [old],
                        unmet={"NXRRSET": missing})
            etag = self.serials.after(req, zone, "update", [
                f"delete {_record_text(current)}", f"add {_record_text(new, True)}"])
        self.log("info", "record updated", zone=zone, record=_record_text(current),
                 new=new.rdata, **req.who())
        return 200, _record_response(f"Record updated in zone {zone}", zone, record=_echo(
            given, ("name", "type", "currentValue", "newValue"), ttl=new.ttl)), etag

    def remove(self, zone, req):
        """DELETE: one value, or the record set without ``value``; 404 when it is not
        there.  A zone's last apex NS is refused: named would ignore its delete."""
        self._refuse_catalog(zone)
        given = req.json()
        owner, rtype, value = _parse(zonefile.parse_record_removal, given, zone)
        what = " ".join(filter(None, (owner, rtype, value)))
        missing = ApiError(404, f"Record {what} not found in zone {zone}: nothing changed",
                           "value" if value else "name")
        with self.named.lock:
            expect = self.serials.expected(zone, req, "remove")
            self.serials.before(req, zone, expect, "remove")
            require = [(owner, rtype, None)]                # the record set exists
            if value is not None:
                require = self._set_holding(zone, "remove", (owner, rtype, value), missing)
                if rtype == "NS" and owner == zone + "." and len(require) == 1:
                    raise ApiError(409, f"{value} is the zone's last NS record, and named "
                                   "keeps a zone's apex NS (nothing changed): add another "
                                   "first", "value")
            self.update(zone, "remove", require=require, delete=[(owner, rtype, value)],
                        unmet={"NXRRSET": missing}, expect=expect)
            etag = self.serials.after(req, zone, "remove", [f"delete {what}"])
        self.log("info", "record removed", zone=zone, record=what, **req.who())
        return 200, _record_response(f"Record removed from zone {zone}", zone, record=_echo(
            given, ("name", "type"), value=given.get("value"))), etag

    def change(self, zone, req):
        """PATCH: record sets replaced or deleted, every change in one UPDATE, so named
        applies all or none.  Deletes go first, then the adds; the apex NS, which named
        never lets go empty, gets its new values before the old ones go."""
        self._refuse_catalog(zone)
        changes = _parse(zonefile.parse_rrsets, req.json(), zone)
        apex = zone + "."
        cname_owners = {c.owner for c in changes if c.type == "CNAME"}
        add, fields, delete, then_delete, require, forbid = [], [], [], [], [], []
        with self.named.lock:
            expect = self.serials.expected(zone, req, "batch")
            self.serials.before(req, zone, expect, "batch")
            for i, change in enumerate(changes):
                values = change.values or ()
                add += [zonefile.Record(change.owner, change.type, change.ttl, v)
                        for v in values]
                fields += [f"rrsets[{i}].records[{j}]" for j in range(len(values))]
                if change.type == "NS" and change.owner == apex:
                    current = self.named.ask("batch", zone, apex, "NS")
                    require += [(apex, "NS", r.value) for r in current]      # still as read
                    then_delete += [(apex, "NS", r.value) for r in current
                                    if r.value.lower() not in values]
                    continue
                delete.append((change.owner, change.type, None))
                if values and change.type == "CNAME":
                    self._refuse_beside_cname(zone, change, changes, f"rrsets[{i}].name")
                elif values and change.owner not in cname_owners:
                    forbid.append((change.owner, "CNAME"))
            self.update(zone, "batch", add=add, fields=fields, delete=delete, expect=expect,
                        then_delete=then_delete, require=require, forbid=forbid, unmet={
                            "YXRRSET": ApiError(409, "a name this PATCH adds records to has a "
                                                "CNAME, and a CNAME cannot have other data: "
                                                "nothing changed"),
                            "NXRRSET": ApiError(409, "the apex NS record set changed while "
                                                "this PATCH was prepared: nothing changed; "
                                                "send it again")})
            etag = self.serials.after(req, zone, "batch", [_rrset_text(c) for c in changes])
        self.log("info", "records changed", zone=zone, rrsets=[
            f"{c.owner} {c.type} {'REPLACE' if c.values else 'DELETE'}" for c in changes],
            **req.who())
        return 200, _record_response(f"Records changed in zone {zone}", zone,
                                     rrsets=len(changes)), etag

    def listing(self, zone, req):
        """GET: the zone by AXFR, as ``zoneConfig.records``: ?name= ?type= ?all=true."""
        params = req.params(self.PARAMS)
        try:
            owner = zonefile.parse_owner(params["name"], zone) if "name" in params else None
        except zonefile.ZoneError as e:
            raise ApiError(400, str(e), e.field) from None
        rtype = params.get("type", "*").upper()
        if rtype != "*" and rtype not in dns_proto.TYPES and not (
                re.fullmatch(r"TYPE\d{1,5}", rtype) and int(rtype[4:]) <= 65535):
            raise ApiError(400, f"type: '{params['type']}' is not a record type", "type")
        if params.get("all", "false") not in ("true", "false"):
            raise ApiError(400, "all: must be true or false", "all")
        everything = params.get("all") == "true"
        records = self.named.transfer(zone)
        chosen = [r for r in records if (everything or r.type not in zonefile.GENERATED_TYPES)
                  and owner in (None, r.name) and rtype in ("*", r.type)]
        serial = _soa_serial(records[0])
        etag = self.serials.listed(zone, records[0], "list")
        answer = {"zone": zone, "serial": serial}
        if "limit" in params or "after" in params:
            chosen, answer["next"] = self._page(zone, chosen, params)
        answer["records"] = [zonefile.listed_record(r.name, r.type, r.ttl, r.value, zone)
                             for r in chosen]
        if answer.get("next") is None:
            answer.pop("next", None)
        return 200, json_body(answer), [_etag(etag)]

    def _page(self, zone, records, params):
        """A page of the records sorted by name and type: ``?limit=`` records (a record
        set is never split, so a page may hold a few more), after the set ``?after=``
        names as ``<name>/<type>`` (as listed); with the cursor of its last set while
        more remain."""
        records = sorted(records, key=lambda r: (r.name, r.type))
        start = 0
        if "after" in params:                       # only compared: any name named has
            name, _, kind = params["after"].rpartition("/")
            if not name or not kind:
                raise ApiError(400, "after: must be <name>/<type> as listed", "after")
            owner = zone + "." if name == "@" else name.lower() if name.endswith(".") \
                else f"{name.lower()}.{zone}."
            start = bisect.bisect_right([(r.name, r.type) for r in records],
                                        (owner, kind.upper()))
        end = min(start + _limit(params.get("limit")), len(records))
        while 0 < end < len(records) and \
                (records[end].name, records[end].type) == (records[end - 1].name,
                                                          records[end - 1].type):
            end += 1                                # the rest of the last record set
        last = records[end - 1] if end > start else None
        more = end < len(records) and last is not None
        return records[start:end], (
            f"{zonefile.relative_name(last.name, zone)}/{last.type}" if more else None)

    # -- one UPDATE, and what named's refusal of it means

    def update(self, zone, operation, add=(), fields=(), unmet=None, expect=None, **changes):
        """Send one UPDATE of Records (zonefile's); named's refusal becomes an ApiError:
        a failed prerequisite the one ``unmet`` gives for its rcode (412 when it was the
        SOA of an If-Match, ``expect``), REFUSED and NOTAUTH what named says of the zone,
        SERVFAIL what may have caused it."""
        records = [dns_proto.Record(r.owner, r.ttl, r.type, r.rdata) for r in add]
        try:
            try:
                self._send(zone, operation, records, expect, changes)
            except dns_proto.DnsUpdateError as e:
                fresh = expect and e.rcode == "NXRRSET" and \
                    self.serials.recheck(zone, expect, operation)
                if not fresh:
                    raise
                self._send(zone, operation, records, fresh, changes)    # the same serial
        except dns_proto.DnsUpdateError as e:
            if unmet and e.rcode in unmet:
                raise unmet[e.rcode] from None
            if e.rcode in ("REFUSED", "NOTAUTH"):
                raise explain_refusal(self.named, zone, add, fields) from None
            if e.rcode == "SERVFAIL":       # too many records, or named cannot write
                raise _explain_failure(self.named, zone, add, fields) from None
            self.log("error", "named refused an UPDATE", zone=zone, rcode=e.rcode,
                     error=str(e))
            raise ApiError(500, "Internal server error") from None
        except dns_proto.MessageTooLarge as e:
            raise ApiError(413, f"The change does not fit in one UPDATE: {e}; split it into "
                           "smaller requests") from None

    def _send(self, zone, operation, records, expect, changes):
        require = list(changes.get("require", ()))
        if expect:
            require.append((expect[0].name, "SOA", expect[0].value))
        self.named.send_update(operation, zone, records, **{**changes, "require": require})

    def _refuse_catalog(self, zone):
        if zone == self.config.catalog:
            raise ApiError(409, f"Zone {zone} is bindcar's catalog zone: its members follow "
                           "the zones bindcar creates and deletes")

    def _add_cname(self, zone, record, expect=None):
        """A CNAME where its name is unused.  Where this very CNAME is already (a retry,
        a new TTL), it is sent again without that condition; anything else is a 409
        naming what is there."""
        taken = ApiError(409, "the name is in use")
        try:
            self.update(zone, "add", add=[record], fields=["value"], expect=expect,
                        forbid=[(record.owner, None)], unmet={"YXDOMAIN": taken})
            return
        except ApiError as e:
            if e is not taken:
                raise
        there = self.named.ask("add", zone, record.owner, "ANY")
        types = sorted({r.type for r in there if r.type not in ("RRSIG", "NSEC")})
        if types == ["CNAME"] and all(_same_rdata("CNAME", r.value, record.rdata)
                                      for r in there if r.type == "CNAME"):
            self.update(zone, "add", add=[record], fields=["value"], expect=expect)
            return
        hint = "; PUT replaces a CNAME's target" if types == ["CNAME"] else ""
        raise ApiError(409, f"{record.owner} already has {', '.join(types) or 'data'}, and a "
                       f"CNAME must be alone at its name{hint}: nothing changed", "name")

    def _set_holding(self, zone, operation, wanted, missing):
        """The record set holding the value of ``wanted`` (owner, type, value), as
        prerequisites: UPDATE can require only a whole record set (RFC 2136 §2.4.2),
        so the set read now must be the same when named applies the change.
        ``missing`` (404) when the value is not in it."""
        owner, rtype, value = wanted
        values = [r.value for r in self.named.ask(operation, zone, owner, rtype)
                  if r.name == owner and r.type == rtype]       # not a CNAME it led to
        if not any(_same_rdata(rtype, v, value) for v in values):
            values = [r.value for r in self._own_data(zone, owner) if r.type == rtype]
            if not any(_same_rdata(rtype, v, value) for v in values):
                raise missing
        return [(owner, rtype, v) for v in values]

    def _own_data(self, zone, owner):
        """The zone's own records at ``owner``, read by AXFR: where a query does not see
        them (glue below a delegation, a name a child zone or a DNAME covers) or sees
        more (a wildcard's).  Only when a query's answer would refuse the change."""
        try:
            return [r for r in self.named.transfer(zone) if r.name == owner]
        except ApiError as e:
            if e.status >= 500:
                raise
            return []

    def _refuse_beside_cname(self, zone, change, changes, field):
        """A CNAME a PATCH sets must find its name empty of whatever the PATCH keeps.
        Read, not required: another writer between the read and the UPDATE could
        still make named drop the CNAME without a word."""
        going = {c.type for c in changes if c.owner == change.owner and not c.values}
        kept = {r.type for r in self.named.ask("batch", zone, change.owner, "ANY")}
        kept -= going | {"CNAME", "RRSIG", "NSEC"}
        if kept:                        # a wildcard's records, or the name's own?
            kept = {r.type for r in self._own_data(zone, change.owner)}
            kept = sorted(kept - going - {"CNAME", "RRSIG", "NSEC"})
        if kept:
            raise ApiError(409, f"{change.owner} has {', '.join(kept)} data, and a CNAME must "
                           "be alone at its name: nothing changed", field)

def explain_refusal(named, zone, add, fields):
    """named said REFUSED or NOTAUTH: ask it why, in words to act on."""
    status = _status_fields(named.zone_status_text(zone))     # 404 if not served
    key = named.dns.key_name
    enable = (f"create it with \"updateKeyName\": \"{key}\", or PATCH it with "
              f"\"allowUpdate\": [\"key {key}\"]")
    kind = _zone_type(status.get("type"))
    if kind != "primary":
        return ApiError(400, f"Zone {zone} is a {kind} zone: its records change on its "
                        "primary only")
    if status.get("frozen") == "yes":
        return ApiError(409, f"Zone {zone} is frozen: thaw it first (POST "
                        f"/api/v1/zones/{zone}/thaw); nothing changed")
    if status.get("dynamic") == "no":
        return ApiError(400, f"Zone {zone} does not take dynamic updates: {enable}")
    problem = _integrity_problem(named, zone, add, fields)
    if problem:
        return problem
    shown = named.shown_zone(zone)
    allowed = [" ".join(word for word, _ in entry) for statement in shown
               if statement[0] == ("allow-update", False) and isinstance(statement[-1], list)
               for entry in statement[-1]]
    if f"key {key}".lower() not in (entry.lower() for entry in allowed) and \
            zonefile.shown_option(shown, "update-policy") is None:
        return ApiError(400, f"named refused the change: zone {zone} does not allow "
                        f"updates by bindcar's update key {key!r}; {enable}")
    return ApiError(409, f"named refused the change to zone {zone} (REFUSED), though its "
                    "allow-update names bindcar's key: its integrity checks (an MX or "
                    "apex NS whose target in the zone has no address or is a CNAME, "
                    "also after this change's deletions) are the likely reason; see "
                    "named's log. Nothing changed")


def _explain_failure(named, zone, add, fields):
    """named failed (SERVFAIL): a record set grown past named's max-records-per-type
    is the caller's to mend (409); anything else is named's (503, see its log)."""
    adding = {}
    for record, field in zip(add, fields):
        adding.setdefault((record.owner, record.type), (field, set()))[1].add(record.rdata)
    for (owner, rtype), (field, values) in adding.items():
        there = [r.value for r in named.ask("add", zone, owner, rtype)
                 if r.name == owner and r.type == rtype]
        count = len(there) + sum(not any(_same_rdata(rtype, v, t) for t in there)
                                 for v in values)
        if count > MAX_RECORDS_PER_TYPE:
            return ApiError(409, f"{owner} {rtype} would hold {count} records; named "
                            f"holds at most {MAX_RECORDS_PER_TYPE} of one type at one name "
                            "(max-records-per-type in named.conf): nothing changed", field)
    return named.update_failed(zone)


def _integrity_problem(named, zone, add, fields):
    """named refuses an MX or apex NS whose target inside the zone has no address
    record, or is a CNAME: the first such record of ``add``, as a 400 naming it."""
    addressed = {r.owner for r in add if r.type in ("A", "AAAA")}
    for record, field in zip(add, fields):
        target = record.rdata.rsplit(" ", 1)[-1]
        if record.type != "MX" and (record.type, record.owner) != ("NS", zone + "."):
            continue                # named checks the targets of MX and apex NS only
        if target == "." or not zonefile.in_zone(target, zone) or target in addressed:
            continue
        if named.ask("add", zone, target, "CNAME"):
            return ApiError(400, f"{target} is a CNAME, and named refuses an "
                            f"{record.type} record that points to one: point it to the "
                            "name the CNAME leads to; nothing changed", field)
        if not any(named.ask("add", zone, target, t) for t in ("A", "AAAA")):
            return ApiError(400, f"{target} is inside zone {zone} and has no A or AAAA "
                            f"record, so named refuses an {record.type} record that "
                            "points to it: add its address first (or in the same "
                            "PATCH); nothing changed", field)
    return None


def _parse(parse, data, zone):
    """``parse(data, zone)`` of zonefile; its ZoneError is a 400 naming the field."""
    try:
        return parse(data, zone)
    except zonefile.ZoneError as e:
        raise ApiError(400, str(e), e.field) from None


def _echo(given, keys, **more):
    """What the Rust bindcar's RecordResponse echoes: the fields as the caller sent
    them (``priority`` too, when given), and the values bindcar used."""
    echo = {key: given[key] for key in keys}
    echo.update(more)
    if given.get("priority") is not None:
        echo["priority"] = given["priority"]
    return echo


def _same_rdata(rtype, a, b):
    """Do two values of a record type say the same?  Names in them are compared without
    case, as named compares them; the rest as bytes on the wire."""
    if rtype in ("NS", "CNAME", "PTR", "MX", "SRV"):
        a, b = a.lower(), b.lower()
    try:
        return dns_proto.rdata_to_wire(rtype, a) == dns_proto.rdata_to_wire(rtype, b)
    except ValueError:
        return False


def _members(records, catalog):
    """{member owner: zone} of a catalog's records (RFC 9432 §4.1); properties such as
    ``group.<id>.zones.<catalog>`` are not members."""
    tail = f".zones.{catalog}."
    return {r.name: r.value.rstrip(".").lower() for r in records
            if r.type == "PTR" and r.name.endswith(tail) and "." not in r.name[:-len(tail)]}


def _record_text(record, ttl=False):
    return f"{record.owner} {f'{record.ttl} ' if ttl else ''}{record.type} {record.rdata}"


def _rrset_text(change):
    """A PATCH's record set change, for the audit trail."""
    if not change.values:
        return f"delete {change.owner} {change.type}"
    return f"replace {change.owner} {change.ttl} {change.type} " + " | ".join(change.values)


def _record_response(message, zone, **details):
    """RecordResponse: ``details`` the zone and what changed, as the Rust bindcar's."""
    return json_body({"success": True, "message": message, "details": {"zone": zone,
                                                                        **details}})


# ---------------------------------------------------------------- DNSSEC keys and DS

class Dnssec:
    """A signed zone's keys as named reports them (``rndc dnssec -status``), its DNSKEYs,
    and the DS records its parent needs, computed here (SHA-256 and SHA-384, RFC 4034
    §5.1.4); ``checkds`` tells named the parent has (or no longer has) a DS, so that a
    rollover goes on."""

    def __init__(self, log, named):
        self.log, self.named = log, named

    def status(self, zone, req):
        text = self.named.zone_command(f"dnssec -status {zone}", zone, None)   # 404: no zone
        parsed = zonefile.parse_dnssec_status(text)
        if parsed is None:
            return 200, json_body({"zone": zone, "signed": False})
        policy, keys = parsed
        dnskeys = self._keys(zone, "DNSKEY")
        answer = {"zone": zone, "signed": True, "policy": policy, "keys": keys,
                  "dnskeys": [_dnskey_json(rdata) for rdata in dnskeys],
                  "ds": [_ds_json(dns_proto.ds_record(zone + ".", rdata, digest))
                         for rdata in dnskeys if rdata[1] & 1 and not rdata[1] & 0x80
                         for digest in sorted(dns_proto.DS_DIGESTS)],
                  "cds": [_ds_json(_cds_text(rdata)) for rdata in self._keys(zone, "CDS")],
                  "cdnskey": [_dnskey_json(rdata) for rdata in self._keys(zone, "CDNSKEY")]}
        return 200, json_body(answer)

    def _keys(self, zone, rtype):
        return [dns_proto.generic_rdata(r.value)
                for r in self.named.ask("dnssec", zone, zone, rtype) if r.type == rtype]

    def checkds(self, zone, req):
        """``rndc dnssec -checkds [-key tag] published|withdrawn <zone>``."""
        try:
            which, key = zonefile.parse_checkds(req.json())
        except zonefile.ZoneError as e:
            raise ApiError(400, str(e), e.field) from None
        command = f"dnssec -checkds{f' -key {key}' if key is not None else ''} {which} {zone}"
        with self.named.lock:
            text = self.named.zone_command(command, zone, "checkds on")
        if text.startswith("Error"):                # named's refusal, in its words
            raise ApiError(409, f"named refused checkds for zone {zone}: "
                           f"{text.partition(': ')[2] or text}", "key")
        self.log("info", "checkds", zone=zone, ds=which, key=key, **req.who())
        req.audit = {"changes": [f"checkds {which}" + (f" key {key}" if key else "")]}
        return 200, _zone_response(f"DS {which} for zone {zone}", text or None)


def _dnskey_json(rdata):
    return {"tag": dns_proto.key_tag(rdata), "flags": int.from_bytes(rdata[:2], "big"),
            "protocol": rdata[2], "algorithm": rdata[3],
            "publicKey": base64.b64encode(rdata[4:]).decode()}


def _cds_text(rdata):
    return f"{int.from_bytes(rdata[:2], 'big')} {rdata[2]} {rdata[3]} {rdata[4:].hex().upper()}"


def _ds_json(text):
    tag, algorithm, digest_type, digest = text.split()
    return {"keyTag": int(tag), "algorithm": int(algorithm), "digestType": int(digest_type),
            "digest": digest, "record": text}


# ---------------------------------------------------------------- the audit trail

# The operations that change named or its zones: each one named accepted is a line.
AUDITED = ("server_reload", "create", "modify", "delete", "reload", "freeze", "thaw",
           "notify", "retransfer", "record_add", "record_update", "record_remove",
           "record_batch", "catalog_reconcile", "checkds")
HISTORY_DEFAULT, HISTORY_MOST = 100, 1000       # ?limit= of .../history
AUDIT_BLOCK = 65536                             # bytes read at a time, from the end


class Audit:
    """BIND_AUDIT_LOG: one JSON line per change named accepted (time, request id, who,
    route, zone, what changed, the SOA serial before and after), appended and fsync'd
    before the answer; never a secret.  When a line cannot be written, the change it
    was for is named in the process log, and every later change is refused (503, and
    /ready says so) until the file takes a write again."""

    def __init__(self, config, log):
        self.path, self.log = config.audit_log, log
        self.lock = threading.Lock()
        self.broken = None                      # why the last write failed
        self.fd = self._open() if self.path else None
        self.torn = bool(self.fd is not None and _ends_torn(self.path))  # a line cut short

    def _open(self):
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o640)
        except OSError as e:
            raise ConfigError(f"BIND_AUDIT_LOG: cannot open {self.path}: "
                              f"{e.strerror or e}") from None

    def check(self):
        """Before a change: 503 while the trail cannot be written.  Tried again first,
        with a line saying that it resumes (and after what)."""
        if self.broken is None:
            return
        with self.lock:
            if self.broken is None:
                return
            try:
                vfs = os.fstatvfs(self.fd)
                room = vfs.f_bavail * vfs.f_frsize
            except OSError:
                room = 0
            if room < DISK_LOW or not self._append(
                    {"time": _timestamp(time.time()), "event": "resumed",
                     "after": self.broken}):
                raise ApiError(503, f"the audit log (BIND_AUDIT_LOG) cannot be written "
                               f"({self.broken}): no change is made until it can")
            self.log("info", "the audit log is writable again; changes are taken again")
            self.broken = None

    def _append(self, entry):
        """One line, written and fsync'd (under ``lock``); False when it failed.  What
        a failed write left of the line is cut off again (else the next line starts on
        a line of its own)."""
        data = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        size = None
        try:
            size = os.fstat(self.fd).st_size
            if os.write(self.fd, b"\n" * self.torn + data) != len(data) + self.torn:
                raise OSError(errno.ENOSPC, "No space left on device (a short write)")
            os.fsync(self.fd)
            self.torn = False
            return True
        except OSError as e:
            self.broken = e.strerror or str(e)
            try:
                if size is not None:
                    os.ftruncate(self.fd, size)
            except OSError:
                self.torn = True
            return False

    def record(self, method, route, operation, zone, req):
        """The line of a change named accepted through the API; its request id."""
        return self.write({"identity": _who(req), "client": req.client,
                           "route": f"{method} {route}", "operation": operation,
                           "zone": zone, "changes": [operation], **(req.audit or {})})

    def write(self, fields):
        """A line of ``fields``, with its time and a new request id; the id."""
        request_id = os.urandom(8).hex()
        entry = {"time": _timestamp(time.time()), "requestId": request_id, **fields}
        with self.lock:
            if not self._append(entry):
                self.log("error", "audit log not written: this change is recorded here only, "
                         "and later changes are refused until it can be written",
                         error=self.broken, change=entry)
        return request_id

    def history(self, zone, req):
        """GET .../history: the zone's lines, newest first, ``?limit=`` (100)."""
        if self.fd is None:
            raise ApiError(404, "No audit log: set BIND_AUDIT_LOG to keep one")
        limit = req.params(("limit",)).get("limit")
        limit = HISTORY_DEFAULT if limit is None else min(_limit(limit), HISTORY_MOST)
        return 200, json_body({"zone": zone, "entries": self._newest(zone, limit)})

    def _newest(self, zone, limit):
        """Lines of ``zone``, read from the end a block at a time; a torn line skipped."""
        found = []
        with open(self.path, "rb") as f:
            pos, tail = f.seek(0, os.SEEK_END), b""
            while pos > 0 and len(found) < limit:
                step = min(AUDIT_BLOCK, pos)
                pos -= step
                f.seek(pos)
                lines = (f.read(step) + tail).split(b"\n")
                tail = lines.pop(0) if pos else b""
                for line in reversed(lines):
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and entry.get("zone") == zone:
                        found.append(entry)
                        if len(found) == limit:
                            break
        return found


def _ends_torn(path):
    """Does the file end in a line cut short (a crash mid-write)? The next line then
    starts on a line of its own."""
    try:
        with open(path, "rb") as f:
            return f.seek(0, os.SEEK_END) > 0 and f.seek(-1, os.SEEK_END) >= 0 and \
                f.read(1) != b"\n"
    except OSError:
        return False


def _who(req):
    """The caller as the trail names it: its ServiceAccount, or its token by the first
    12 hex digits of the token's SHA-256 (never the token)."""
    token = req.headers.get("Authorization", "").partition(" ")[2].strip()
    if str(req.identity).startswith("system:serviceaccount:") or not token:
        return req.identity
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{req.identity}:{digest[:12]}"


# ---------------------------------------------------------------- catalog and propagation

class Catalog:
    """A catalog zone (RFC 9432) kept in step with the primary zones bindcar manages, so
    that BIND secondaries configured with ``catalog-zones`` add, transfer and drop them by
    themselves (NOTIFY, IXFR/AXFR: BIND is the distributed engine).  The invariant, after
    every request and every start: its members are the primary zones bindcar manages.
    Also the zones' propagation to BIND_SECONDARIES, with a catalog or without."""

    BATCH = 200                 # member changes in one UPDATE: a message holds 64 KiB

    def __init__(self, config, log, named, managed):
        self.config, self.log, self.named, self.managed = config, log, named, managed
        self.name = config.catalog              # None: no catalog
        self.members = {}                       # zone -> member owner, as last read or written
        self.unsure = False                     # a member change's outcome is unknown
        self.problem = "not made yet: bindcar is checking its zones"   # None once kept
        self.lost = False                       # named no longer serves it: made again
        self.last_repair = ([], [])

    # -- start, and the invariant

    def keep(self, stopped):
        """At start, once the zones are checked: make or check the catalog and repair its
        members; while named is away, try again until ``stopped``."""
        while self.name and not stopped.is_set():
            with self.named.lock:
                try:
                    self.start()
                    return
                except ApiError as e:
                    error = e.message
                except Exception:
                    self.log("error", "cannot keep the catalog zone", zone=self.name,
                             traceback=_traceback())
                    return
            if not self.problem.startswith("named is not reachable"):
                self.log("error", "cannot keep the catalog zone; creates and deletes of "
                         "primary zones fail until it can be kept (POST "
                         "/api/v1/catalog/reconcile tries again)", zone=self.name,
                         error=error)
                return
            stopped.wait(RECONCILE_RETRY)       # named went away: try again when it is back

    def start(self):
        """Make the catalog when named has none (from its file when bindcar's file of it
        is left: its serial goes on), else check it is a catalog bindcar may update; then
        repair its members.  Under the app's lock; ApiError when it cannot be kept."""
        if not self.managed.checked.is_set():
            raise ApiError(503, "bindcar is still checking its zones against named: the "
                           "catalog is kept once it knows them all; try again shortly")
        try:
            self.named.rndc_call(f"zonestatus {self.name}")
        except rndc_proto.RndcCommandError as e:
            if e.err != "not found":
                raise self._unkept(f"named says {e.err}") from None
            self._make()
        except rndc_proto.RndcError as e:
            raise self._unkept(f"named is not reachable over RNDC ({e})") from None
        try:
            records = self.named.transfer(self.name)
        except ApiError as e:
            raise self._unkept(f"bindcar cannot read it: {e.message}") from None
        if not any(r.type == "TXT" and r.name == f"version.{self.name}." and
                   r.value == '"2"' for r in records):
            raise self._unkept("it is not a catalog zone (no version TXT \"2\"): bindcar "
                               "leaves it alone")
        try:
            self._update()                      # nothing to change: may bindcar update it?
        except ApiError as e:
            raise self._unkept(e.message.removeprefix(f"Catalog zone {self.name}: ")) from None
        self.problem, self.lost = None, False
        self.alignment.wanted = True            # its lists checked against the settings
        self.reconcile()

    def _make(self):
        """The catalog zone in BIND_ZONE_DIR as ``<catalog>.catalog`` (not a ``.zone``:
        never taken for a managed zone).  A file of it left from before is loaded again,
        its serial with it: secondaries ignore a catalog whose serial went back."""
        path = self.managed.catalog_path(self.name)
        transfer, key = self.alignment.transfer(), self.named.dns.key_name
        clause = zonefile.render_zone_clause(     # the clause holds no serial
            zonefile.catalog_zone(self.name, transfer, key, 0), path)
        if os.path.exists(path):                # named may have rewritten it: no marker
            try:
                self.named.call_named(f'addzone "{self.name}" {clause}', self.name)
                self.log("info", "catalog zone loaded again from its file", zone=self.name)
                return
            except rndc_proto.RndcCommandError as e:
                self.log("warn", "catalog zone file left from before does not load; made "
                         "anew", zone=self.name, err=e.err)
            self.managed.remove_catalog(self.name)
        zone = zonefile.catalog_zone(self.name, transfer, key, self._fresh_serial())
        self.managed.write(self.name, path, zonefile.render_zone_file(zone))
        try:
            self.named.call_named(f'addzone "{self.name}" {clause}', self.name)
        except rndc_proto.RndcCommandError as e:
            self.managed.remove_catalog(self.name)
            raise self.named.rndc_error(e, self.name, "add", status=503) from None
        self.log("info", "catalog zone created", zone=self.name,
                 allow_transfer=list(transfer))

    def _fresh_serial(self):
        """The time now, or past what a secondary already holds of an earlier catalog of
        this name, whichever is greater."""
        serials = [serial for _, _, serial, _ in self.roster.ask(self.name) if serial]
        return max([int(time.time())] + [(s + 1) & 0xFFFFFFFF for s in serials])

    def served(self):
        """Does named still serve the catalog?  Asked with an SOA query (zonestatus costs
        named more the more zones it holds); when named says no, the catalog is not kept,
        and the settle loop makes it again.  No answer proves nothing."""
        reply = dns_proto.ask_many([(self.named.dns_address(), self.config.update_port,
                                     dns_proto.soa_query(self.name))], LOOK_TIMEOUT)[0]
        if not _not_served(reply):
            return
        try:                                    # REFUSED may be an allow-query: make sure
            self.named.rndc_call(f"zonestatus {self.name}")
        except rndc_proto.RndcCommandError as e:
            if e.err == "not found":
                self.problem, self.lost = "named does not serve it (not found)", True
        except rndc_proto.RndcError:
            pass

    def _unkept(self, why):
        self.problem = why
        return ApiError(503, f"Catalog zone {self.name}: {why}")

    def _read(self):
        """The catalog's records by AXFR; when named lost it, it is not kept (the next
        reconcile makes it again)."""
        try:
            return self.named.transfer(self.name)
        except ApiError as e:
            if e.status in (404, 409):
                self.lost = True
                raise self._unkept(f"named does not serve it ({e.message})") from None
            raise

    def reconcile(self):
        """Make the members the primary zones bindcar manages, logging each repair;
        (added, removed).  A zone keeps the member it has (a second one of it goes); one
        without gets a new one.  Member properties (``group``, ``coo``) go with their
        member.  An UPDATE named still owes an answer to is waited for first: what the
        transfer shows must include it."""
        if self.problem:
            self.start()                        # made or checked again; then reconciles
            return self.last_repair
        self.named.settle_updates()
        records = self._read()
        found, want = _members(records, self.name), self.managed.primaries.copy()
        kept = self._kept(found, want)
        added = sorted(want - kept.keys())
        extra = sorted(owner for owner, zone in found.items() if kept.get(zone) != owner)
        removals = [(r.name, "ANY", None) for r in records
                    if any(r.name == owner or r.name.endswith("." + owner) for owner in extra)]
        for i in range(0, len(removals), self.BATCH):
            self._update(delete=removals[i:i + self.BATCH])
        new = [(zone, self._new_owner(zone)) for zone in added]
        for i in range(0, len(new), self.BATCH):
            self._update(add=new[i:i + self.BATCH])
        for zone in added:
            self.log("warn", "catalog repaired: member added", zone=zone, catalog=self.name)
        for owner in extra:
            self.log("warn", "catalog repaired: member removed", zone=found[owner],
                     catalog=self.name)
        self.named.metrics.count("bindcar_catalog_repairs_total", (), len(added) + len(extra))
        self.members, self.unsure = {**kept, **dict(new)}, False
        self.last_repair = (added, sorted(found[owner] for owner in extra))
        return self.last_repair

    def _kept(self, found, zones):
        """{zone: owner} of the found members ({owner: zone}) that ``zones`` keep: the one
        bindcar made when it is there (an older one of a zone created again must go,
        or secondaries keep the old zone's data), else the first."""
        kept = {}
        for owner, zone in sorted(found.items()):
            if zone in zones and (zone not in kept or owner == self.members.get(zone)):
                kept[zone] = owner
        return kept

    # -- members, one UPDATE each

    def _new_owner(self, zone):
        """A member owner of this create of ``zone`` alone (zonefile.catalog_member_id)."""
        return zonefile.catalog_member(zone, self.name, time.time_ns())[0]

    def add(self, zone, owner=None):
        """A member for ``zone``: a new one, or ``owner`` again (the undo of a removal).
        Its owner is noted first: the undo of an add whose outcome is unknown needs it."""
        self.members[zone] = owner = owner or self._new_owner(zone)
        self._update(add=[(zone, owner)])

    def remove(self, zone):
        """The member and its properties (RFC 9432 §5: ``group``, ``coo``)."""
        owner = self.members.get(zone)
        if owner:
            self._update(delete=[(owner, "PTR", None), (f"group.{owner}", "ANY", None),
                                 (f"coo.{owner}", "ANY", None)])
        self.members.pop(zone, None)

    def undo(self, change, zone, *args):
        """Undo a member change whose outcome is unknown (named's answer lost): both
        changes are safe to repeat.  What still fails, the next reconcile mends: it
        runs as soon as named answers again (``unsure``)."""
        try:
            change(zone, *args)
        except ApiError as e:
            self.unsure = True
            self.log("error", "the catalog may be out of step until named answers again",
                     zone=zone, error=e.message)

    def require_kept(self):
        """503 before a create or delete of a primary zone the catalog would miss."""
        if self.name and self.problem:
            raise ApiError(503, f"Catalog zone {self.name} is not kept ({self.problem}): "
                           "primary zones cannot be created or deleted until it is; see "
                           "POST /api/v1/catalog/reconcile")

    def _update(self, add=(), delete=()):
        """One UPDATE of the catalog; named's refusal is a 503 that says why."""
        if add or delete:
            self.require_kept()
        records = [dns_proto.Record(owner, 0, "PTR", zone + ".") for zone, owner in add]
        try:
            self.named.send_update("catalog", self.name, records, delete=delete)
        except dns_proto.DnsUpdateError as e:
            self.log("error", "named refused an UPDATE of the catalog zone", zone=self.name,
                     rcode=e.rcode)
            if e.rcode == "NOTAUTH":          # named lost it: the next reconcile makes it
                self.lost = True
                raise self._unkept(f"named does not serve it ({e.rcode})") from None
            if e.rcode == "SERVFAIL":
                raise self.named.update_failed(self.name) from None
            raise ApiError(503, f"Catalog zone {self.name}: named refused bindcar's UPDATE "
                           f"({e.rcode}): its allow-update must name bindcar's update key "
                           f"{self.named.dns.key_name!r}") from None

    # -- the routes

    def status(self, req):
        """GET /api/v1/catalog: the catalog, its serial and members, and any difference
        from the primary zones bindcar manages."""
        if not self.name:
            raise ApiError(404, "No catalog zone: set BIND_CATALOG_ZONE to keep one")
        if self.problem:
            raise self._unkept(self.problem)
        records = self._read()
        serial, found = _soa_serial(records[0]), _members(records, self.name)
        want = self.managed.primaries.copy()
        kept = self._kept(found, want)
        missing = sorted(want - kept.keys())
        orphans = sorted(zone for owner, zone in found.items() if kept.get(zone) != owner)
        secondaries = self.roster.status()
        refused = sorted({zone for s in secondaries for zone in s["refused"]})
        healthy = not (missing or orphans or refused) and all(
            s["reachable"] and s["checked"] and s["catalogSerial"] == serial and
            not s["lagging"] for s in secondaries)
        return 200, json_body({
            "zone": self.name, "serial": serial, "members": len(found), "healthy": healthy,
            "missing": missing, "orphans": orphans, "refused": refused,
            "secondaries": secondaries})

    def propagation(self, zone, req):
        """GET .../propagation: the zone's SOA serial here and on each secondary (names
        resolved now), all asked at once, each within PROPAGATION_TIMEOUT."""
        here = [r for r in self.named.ask("propagation", zone, zone, "SOA") if r.type == "SOA"]
        if not here:
            raise ApiError(404, f"Zone {zone} not found")
        serial = _soa_serial(here[0])
        secondaries = [{"server": server, "address": address, "serial": theirs,
                        "inSync": theirs == serial, "error": error}
                       for server, address, theirs, error in self.roster.ask(zone)]
        return 200, json_body({"zone": zone, "serial": serial, "secondaries": secondaries})


# ---------------------------------------------------------------- scale-out: the secondaries

def resolve_host(name):
    """The addresses of host ``name`` by the system resolver (a headless Service gives
    every pod's), sorted; [] when it has none now.  Addresses no server has (0.0.0.0,
    multicast, broadcast) are left out."""
    try:
        found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_UDP)
    except (OSError, UnicodeError):
        return []
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in found}
    return sorted(filter(_a_server, addresses), key=lambda a: (a.version, a))


def _a_server(address):
    """Not 0.0.0.0, ::, a multicast or the broadcast address: one a server may have."""
    return not (address.is_unspecified or address.is_multicast or
                address == ipaddress.IPv4Address("255.255.255.255"))


class Peer:
    """What bindcar knows of one secondary, at one address."""

    def __init__(self, server, address, port):
        self.server, self.address, self.port = server, address, port
        self.reachable = None                   # None: not asked yet
        self.catalog_serial = None
        self.since = time.time()                # of the state below, for GET /catalog
        self.lagging = {}                       # zone -> [since, NOTIFYs sent, due]
        self.refused = {}                       # zone -> its allow-transfer leaves it out
        self.sweep = []                         # members still to ask
        self.unchecked = True                   # members not all asked since it came back
        self.swept_at = time.monotonic()
        self.looked_at = -math.inf
        self.notify_refused = False             # logged once
        self.notified = collections.deque()     # when each NOTIFY of the last minute went

    def text(self):
        return _server_text((self.address, self.port))

    def forget(self, zone):
        self.lagging.pop(zone, None)
        self.refused.pop(zone, None)


class Roster:
    """Who the secondaries are now: each entry of BIND_SECONDARIES by its addresses (a
    name resolved with the system resolver, every RESOLVE_EVERY and for each
    propagation request), one Peer each; and what GET /api/v1/catalog and
    .../propagation show of them."""

    RESOLVE_EVERY = 30.0        # seconds between two resolutions of the names

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.lock = threading.Lock()            # the peers, between the loop and readers
        self.peers = {}                         # (address, port) -> Peer
        self.addresses = {}                     # server text -> [addresses], as resolved
        self.resolved_at = -math.inf
        self.moved = False                      # the addresses changed: ACLs to align

    def transfer_addresses(self):
        """The secondaries' addresses now: an ``allow-transfer`` without a transfer key."""
        with self.lock:
            return sorted({p.address for p in self.peers.values()},
                          key=lambda a: (a.version, a))

    def resolve(self, now=None):
        """Each server's addresses now; peers come and go with them, each change logged.
        True when the set of addresses changed."""
        found = {}
        for host, port in self.config.secondaries:
            found[(host, port)] = [host] if isinstance(host, ipaddress._BaseAddress) else \
                resolve_host(host)
        with self.lock:
            self.resolved_at = time.monotonic() if now is None else now
            before = set(self.peers)
            addresses = {_server_text(s): found[s] for s in self.config.secondaries}
            for text, now_has in addresses.items():
                if now_has != self.addresses.get(text):
                    self.log("info" if now_has else "warn", "secondary resolved" if now_has
                             else "secondary has no address now", server=text,
                             addresses=[str(a) for a in now_has])
            self.addresses = addresses
            wanted = {(address, port or 53): _server_text((host, port))
                      for (host, port), found_here in found.items() for address in found_here}
            self.peers = {key: self.peers.get(key) or Peer(text, *key)
                          for key, text in wanted.items()}
            return set(self.peers) != before

    def ask(self, zone):
        """``zone``'s SOA serial on each secondary, names resolved now, all asked at once
        within PROPAGATION_TIMEOUT: [(server, address, serial or None, error or None)]."""
        if self.resolve():
            self.moved = True
        with self.lock:
            peers = list(self.peers.values())
            nameless = [text for text, found in self.addresses.items() if not found]
        replies = dns_proto.ask_many([(str(p.address), p.port, dns_proto.soa_query(zone))
                                      for p in peers], PROPAGATION_TIMEOUT)
        answers = []
        for peer, reply in zip(peers, replies):
            serial, error = _serial_of(reply, zone), None
            if isinstance(reply, dns_proto.DnsError):
                error = f"no answer to the query for {zone} SOA within " \
                        f"{PROPAGATION_TIMEOUT:g} s"
            elif serial is None:
                error = "it does not serve the zone" + (
                    f" ({dns_proto.RCODES.get(reply.rcode, reply.rcode)})" if reply.rcode
                    else "")
            answers.append((peer.server, peer.text(), serial, error))
        return answers + [(text, None, None, "the name has no address now")
                          for text in nameless]

    def status(self):
        """Per secondary: reachable, catalog serial, members lagging or refused, since."""
        with self.lock:
            return [{"server": p.server, "address": p.text(), "reachable": p.reachable,
                     "catalogSerial": p.catalog_serial, "checked": not p.unchecked,
                     "lagging": sorted(z for z in p.lagging if not p.refused.get(z)),
                     "refused": sorted(z for z, no in p.refused.items() if no),
                     "since": _utc(p.since)} for p in self.peers.values()]

    def lagging_count(self):
        with self.lock:
            return sum(1 for p in self.peers.values() if p.lagging or p.reachable is False)


class Secondaries:
    """bindcar's half of scale-out: BIND_SECONDARIES by address as their names resolve
    now; a NOTIFY to each after every change bindcar makes to a primary zone it manages
    or to the catalog (so no zone's ``also-notify`` can go stale); and each followed
    until it serves what the primary serves.  A secondary that lags (an older serial, a
    zone not loaded, or a member missing while its catalog is current) gets NOTIFYs for
    that zone again, backing off, at most NOTIFY_CAP a minute; one that comes back, or
    gets the catalog anew, has every member asked.  BIND's NOTIFY/IXFR and the catalog
    stay the engine: this only knocks on the door until it opens, and says so in
    GET /api/v1/catalog."""

    TURN = 0.2                  # seconds between two turns of the loop (or a change)
    LOOK_EVERY = 1.0            # seconds between two looks at a secondary's catalog serial
    SWEEP_EVERY = 300.0         # seconds between two checks of every member on a secondary
    BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)     # seconds before a lagging zone is asked again
    NOTIFY_CAP = 6000           # NOTIFYs to one secondary in a minute (100 a second)
    CAP_WAIT = 1.0              # seconds a NOTIFY past the cap waits for its turn
    SWEEP_BATCH = 500           # members asked of one secondary in a turn
    JUDGE_AFTER = 3             # NOTIFYs unanswered by a transfer before asking why
    JUDGE_BATCH = 20            # zones whose allow-transfer is read in a turn

    def __init__(self, config, log, named, managed, catalog, roster):
        self.config, self.log, self.named = config, log, named
        self.managed, self.catalog, self.roster = managed, catalog, roster
        self.lock = roster.lock                 # the peers' state, with the roster's
        self.changed, self.wake = set(), threading.Event()
        self.key = config.transfer_signer
        self.judged = {}                        # zone -> its allow-transfer entries
        self.catalog_serial = None              # the primary's, at the last look

    # -- what the rest of bindcar tells and asks

    def change(self, zone):
        """bindcar changed ``zone``: NOTIFY every secondary now, when it is the catalog
        or a primary zone bindcar manages (the others are not the secondaries' to
        follow: named.conf's zones, secondary zones)."""
        if not self.config.secondaries or \
                zone != self.catalog.name and zone not in self.managed.primaries:
            return
        with self.lock:
            self.changed.add(zone)
            self.judged.pop(zone, None)
            for peer in self.roster.peers.values():
                peer.refused.pop(zone, None)    # a PATCH may have let it in
        self.wake.set()

    # -- the loop

    def follow(self, stopped):
        """Turn until ``stopped``; a change wakes a turn at once."""
        last = None
        while not stopped.is_set():
            try:
                self.turn()
                last = None
            except Exception:
                if last != "traceback":
                    self.log("error", "cannot follow the secondaries; tried again",
                             traceback=_traceback())
                last = "traceback"
            self.wake.wait(self.TURN)
            self.wake.clear()

    def turn(self, now=None):
        """One look: NOTIFY what changed, ask what is due, NOTIFY what still lags."""
        now = time.monotonic() if now is None else now
        roster = self.roster
        if now - roster.resolved_at >= roster.RESOLVE_EVERY and roster.resolve(now):
            roster.moved = True
        with self.lock:
            changed, self.changed = self.changed, set()
            for peer in self.roster.peers.values():    # changed: NOTIFYed at once, asked after
                for zone in changed:
                    since = peer.lagging.get(zone, [time.time()])[0]
                    peer.lagging[zone] = [since, 0, now]
            asks, notifies = self._asks(now)
        zones = sorted({zone for _, zone in asks if zone})
        named = self.named.dns_address()
        requests = [(named, self.config.update_port, dns_proto.soa_query(zone))
                    for zone in zones]
        requests += [(str(p.address), p.port, dns_proto.soa_query(zone or "."))
                     for p, zone in asks]
        requests += [(str(p.address), p.port, dns_proto.notify(zone), self.key)
                     for p, zone in notifies]
        replies = dns_proto.ask_many(requests, LOOK_TIMEOUT) if requests else []
        primary = dict(zip(zones, replies))
        with self.lock:
            self._notified(notifies, replies[len(zones) + len(asks):])
            again = self._learn(asks, replies[len(zones):len(zones) + len(asks)], primary, now)
            for peer in self.roster.peers.values():    # its last batch of members was just asked
                if peer.reachable and not peer.sweep and (peer.catalog_serial is not None
                                                          or not self.catalog.name):
                    peer.unchecked = False
        if again:
            replies = dns_proto.ask_many([(str(p.address), p.port, dns_proto.notify(z))
                                          for p, z in again], LOOK_TIMEOUT, self.key)
            with self.lock:
                self._notified(again, replies)
        self._judge()
        self.named.metrics.count("bindcar_notifies_sent_total", (), len(notifies) + len(again))

    def _asks(self, now):
        """(peer, zone) to ask (zone None: a look without a catalog), and (peer, zone)
        to NOTIFY now: the zones bindcar has just changed, within the cap, to a
        secondary not known to be away (it is asked again when it comes back)."""
        asks, notifies, catalog = [], [], self.catalog.name
        for peer in self.roster.peers.values():
            if now - peer.looked_at >= self.LOOK_EVERY:
                peer.looked_at = now
                asks.append((peer, catalog))
                if catalog and peer.reachable and not peer.sweep and \
                        now - peer.swept_at >= self.SWEEP_EVERY:
                    self._sweep(peer, now)
            first = [catalog] if catalog in peer.lagging else []    # never starved
            for zone in first + [z for z in peer.lagging if z != catalog]:
                since, sent, due = peer.lagging[zone]
                if due > now or peer.reachable is False:
                    continue
                if sent == 0:
                    if self._may_notify(peer, now):
                        notifies.append((peer, zone))
                        peer.lagging[zone] = [since, 1, now + self.BACKOFF[0]]
                    else:
                        peer.lagging[zone] = [since, 0, now + self.CAP_WAIT]
                elif zone != catalog:
                    asks.append((peer, zone))
            if peer.reachable:
                batch, peer.sweep = peer.sweep[:self.SWEEP_BATCH], peer.sweep[self.SWEEP_BATCH:]
                asks += [(peer, zone) for zone in batch if zone not in peer.lagging]
        return asks, notifies

    def _sweep(self, peer, now):
        peer.sweep, peer.swept_at = sorted(self.managed.primaries.copy()), now
        peer.unchecked = True

    def _learn(self, asks, answers, primary, now):
        """What the answers say of each peer and zone; (peer, zone) to NOTIFY again."""
        again, catalog = [], self.catalog.name
        if catalog in primary:
            self.catalog_serial = _serial_of(primary[catalog], catalog)
        for (peer, zone), reply in zip(asks, answers):
            if zone == catalog:
                self._looked(peer, reply, now)
            if zone is None or isinstance(reply, dns_proto.DnsError):
                continue                        # no answer: the look at it says so
            want = _serial_of(primary.get(zone), zone)
            if want is None:
                if _not_served(primary.get(zone)):
                    peer.forget(zone)           # gone from the primary: nothing to follow
                    self.judged.pop(zone, None)
                continue                        # named did not say: asked again later
            theirs = _serial_of(reply, zone)
            if theirs == want:
                if zone in peer.lagging:
                    peer.forget(zone)
                    if not peer.lagging:
                        peer.since = time.time()
                        self.log("info", "secondary caught up", server=peer.server,
                                 address=peer.text())
                continue
            self._lags(peer, zone, now, again, carries=reply.rcode == 2 or theirs is not None)
        return again

    def _lags(self, peer, zone, now, again, carries):
        """``zone`` lags on ``peer``: NOTIFY it again when due (and within the cap).  A
        member it lacks while its catalog is behind waits for the catalog; without a
        catalog, a zone a secondary does not carry is not its zone."""
        catalog = self.catalog.name
        if not carries and not catalog:
            peer.forget(zone)
            return
        if not peer.lagging:
            peer.since = time.time()
        since, sent, due = peer.lagging.get(zone, [time.time(), 0, now])
        behind = not carries and zone != catalog and (
            self.catalog_serial is None or peer.catalog_serial != self.catalog_serial)
        if due <= now:
            if behind:
                due = now + 2 * self.LOOK_EVERY     # asked again soon: no NOTIFY till then
            elif self._may_notify(peer, now):
                again.append((peer, zone))
                sent += 1
                due = now + self.BACKOFF[min(sent, len(self.BACKOFF)) - 1]
            else:
                due = now + self.CAP_WAIT
        peer.lagging[zone] = [since, max(sent, 1), due]

    def _looked(self, peer, reply, now):
        """A look at a peer: reachable or not.  One that comes back, or that gets the
        catalog after lacking it, has every member asked; its back-off starts again."""
        reachable = not isinstance(reply, dns_proto.DnsError)
        if reachable != peer.reachable:
            peer.reachable, peer.since = reachable, time.time()
            if reachable:
                self.log("info", "secondary answers", server=peer.server, address=peer.text())
                for entry in peer.lagging.values():
                    entry[1:] = [min(entry[1], 1), now]
                if self.catalog.name:
                    self._sweep(peer, now)
            else:
                self.log("warn", "secondary does not answer", server=peer.server,
                         address=peer.text())
        if not reachable or not self.catalog.name:
            return
        theirs, before = _serial_of(reply, self.catalog.name), peer.catalog_serial
        lacked = before is None or peer.lagging.get(self.catalog.name, (0, 0))[1] > 1
        peer.catalog_serial = theirs
        if theirs is not None and theirs == self.catalog_serial and theirs != before:
            for entry in peer.lagging.values():
                entry[2] = min(entry[2], now)   # members that waited for this catalog
            if lacked:
                self._sweep(peer, now)          # the members it could not have had

    def _may_notify(self, peer, now):
        """Within NOTIFY_CAP for ``peer`` in the last minute?  Counted when True."""
        while peer.notified and now - peer.notified[0] > 60:
            peer.notified.popleft()
        if len(peer.notified) >= self.NOTIFY_CAP:
            return False
        peer.notified.append(now)
        return True

    def _notified(self, sent, replies):
        """Log a secondary's refusal of bindcar's NOTIFY (or of its key) once."""
        for (peer, zone), reply in zip(sent, replies):
            refused = isinstance(reply, dns_proto.DnsTsigError) or \
                isinstance(reply, dns_proto.Message) and reply.rcode == 5
            if refused and not peer.notify_refused:
                peer.notify_refused = True
                self.log("warn", "secondary refuses bindcar's NOTIFY: let bindcar in with "
                         "allow-notify (by BIND_TRANSFER_KEY, when bindcar signs with it)",
                         server=peer.server, address=peer.text(), zone=zone,
                         answer=str(reply) if isinstance(reply, dns_proto.DnsError) else
                         dns_proto.RCODES.get(reply.rcode))

    def _judge(self):
        """A zone lagging after JUDGE_AFTER NOTIFYs: does its allow-transfer let this
        secondary in (by its address, or the transfer key)?  Refused ones are shown.
        At most JUDGE_BATCH zones are read (``showzone``) in a turn."""
        with self.lock:
            lagging = [(peer, zone) for peer in self.roster.peers.values()
                       for zone, (_, sent, _) in peer.lagging.items()
                       if sent >= self.JUDGE_AFTER and zone not in peer.refused]
        unread = {zone for _, zone in lagging if zone not in self.judged}
        for zone in sorted(unread)[:self.JUDGE_BATCH]:
            try:
                self.judged[zone] = zonefile.shown_list(self.named.shown_zone(zone),
                                                        "allow-transfer") or ("any",)
            except ApiError:
                continue
        for peer, zone in lagging:
            entries = self.judged.get(zone)
            if entries is None:
                continue
            admitted = zonefile.acl_admits(entries, peer.address, self.config.transfer_key)
            with self.lock:
                if zone in peer.lagging:
                    peer.refused[zone] = admitted is False
            if admitted is False:
                self.log("warn", "secondary may not transfer a zone: its allow-transfer "
                         "leaves it out", server=peer.server, address=peer.text(), zone=zone)


class Alignment:
    """The settings the secondaries need, in named's configuration: ``allow-transfer``
    by BIND_TRANSFER_KEY, else by the group of the secondaries' addresses as they
    resolve now (a nest bindcar keeps in step: ``zonefile.secondaries_group``), and no
    ``also-notify`` (bindcar NOTIFYs them).  When the settings or the addresses change,
    every managed primary zone is brought in line, one at a time under the lock: its
    group (or, from an older bindcar, the flat list it was given as the catalog's own)
    becomes the key or the new group, its other entries stay; then the catalog."""

    def __init__(self, config, log, named, managed, catalog, secondaries):
        self.config, self.log, self.named = config, log, named
        self.managed, self.catalog, self.secondaries = managed, catalog, secondaries
        self.wanted = True                      # to look at the catalog's lists again

    def transfer(self):
        """A primary zone's default ``allow-transfer`` entries, and the catalog's."""
        key = self.config.transfer_key
        if key:
            return (f'key "{key}"',)
        if not self.config.secondaries:
            return ()                           # the update key alone reads the catalog
        return (zonefile.secondaries_group(self.secondaries.roster.transfer_addresses()),)

    def due(self):
        """Is there a look to take?  Not while a secondary's name resolves to nothing
        (and there is no transfer key): a moment between two pods is not a move."""
        if not self.config.transfer_key and not all(self.secondaries.roster.addresses.values()):
            return False
        return bool(self.catalog.name and not self.catalog.problem and
                    (self.wanted or self.secondaries.roster.moved))

    def align(self, stopped):
        """Bring the zones, then the catalog, in line; tried again (by the settle loop)
        until it has gone through."""
        self.wanted = self.secondaries.roster.moved = False
        try:
            self._align(stopped, self.transfer())
        except BaseException:
            self.wanted = True
            raise

    def _align(self, stopped, transfer):
        name = self.catalog.name
        with self.named.lock:
            shown = self.named.shown_zone(name)
            if zonefile.shown_option(shown, "file") != self.managed.catalog_path(name):
                return self._check_theirs(shown)
            old_notify = set(zonefile.shown_list(shown, "also-notify") or ())
            old = set(zonefile.shown_list(shown, "allow-transfer") or ()) - \
                set(zonefile.shown_list(shown, "allow-update") or ()) - {"none"}
            if not old_notify and old == set(transfer):
                return
        moved = 0
        for zone in sorted(self.managed.primaries.copy()):
            if stopped.is_set():
                self.wanted = True
                return
            with self.named.lock:
                moved += self._bring(zone, transfer, old_notify, old)
        with self.named.lock:
            shown = self.named.shown_zone(name)
            clause = zonefile.patch_zone_clause(shown, zonefile.ZoneUpdate(
                also_notify=(), allow_transfer=transfer))
            self.named.zone_command(f'modzone "{name}" {clause}', name, "modify")
        self.secondaries.change(name)
        self.log("info", "catalog zone's transfers follow the settings now", zone=name,
                 allow_transfer=list(transfer), zones_brought_in_line=moved)

    def _bring(self, zone, transfer, old_notify, old):
        """One zone in line.  Its entries that are the secondaries' (a group, an entry
        of the catalog's ``old`` list such as an earlier transfer key, or, from an older
        bindcar, exactly the catalog's old addresses) become ``transfer``; the others
        stay.  An also-notify that is the catalog's old one goes.  1 when it changed."""
        if zone not in self.managed.primaries:
            return 0
        try:
            shown = self.named.shown_zone(zone)
        except ApiError as e:
            if e.status == 404:
                return 0
            raise
        notify = zonefile.shown_list(shown, "also-notify")
        entries = zonefile.shown_list(shown, "allow-transfer")
        update = zonefile.ZoneUpdate(also_notify=() if notify and old_notify and
                                     set(notify) == old_notify else None)
        if entries is not None:
            def plain(items):
                return {e for e in items if not zonefile.is_group(e) and e != "none" and
                        not e.startswith("key ")}
            ours = {e for e in entries if zonefile.is_group(e) or
                    e.startswith("key ") and e in old}
            if plain(old) and plain(entries) == plain(old):
                ours |= plain(entries)
            wanted = transfer + tuple(e for e in entries if e not in ours and e != "none")
            if ours and set(wanted) != set(entries):
                update = update._replace(allow_transfer=wanted)
        if update == zonefile.ZoneUpdate():
            return 0
        clause = zonefile.patch_zone_clause(shown, update)
        self.named.zone_command(f'modzone "{zone}" {clause}', zone, "modify")
        self.secondaries.change(zone)
        self.log("info", "zone's transfers follow the secondaries' settings now", zone=zone)
        return 1

    def _check_theirs(self, shown):
        """named.conf's catalog is the operator's: said once when it leaves them out."""
        entries = zonefile.shown_list(shown, "allow-transfer") or ("any",)
        key = self.config.transfer_key
        for address in self.secondaries.roster.transfer_addresses():
            if zonefile.acl_admits(entries, address, key) is False:
                self.log("warn", "the catalog zone from named.conf leaves a secondary out of "
                         "its allow-transfer: add the transfer key (or the address) there",
                         zone=self.catalog.name, address=str(address))


def _serial_of(reply, zone):
    if not isinstance(reply, dns_proto.Message) or reply.rcode:
        return None
    return dns_proto.soa_serial(reply, zone)


def _not_served(reply):
    """named says it does not serve the zone asked (REFUSED, NOTAUTH, NXDOMAIN)."""
    return isinstance(reply, dns_proto.Message) and reply.rcode in (3, 5, 9)


def _utc(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# ---------------------------------------------------------------- external-dns: the webhook

WEBHOOK_MEDIA_TYPE = "application/external.dns.webhook+json;version=1"
WEBHOOK_MAX_BODY = 32 << 20     # bytes of a request, as external-dns's own server takes
WEBHOOK_MAX_OBJECTS = 400_000   # '{' in a body (endpoints, their labels), bounding memory
WEBHOOK_MAX_VALUES = 2_000_000  # ',' in a body; 20,000 endpoints take 3.8 MiB, 40,000 '{'
WEBHOOK_LOGGED = 1024           # endpoints whose drop was logged, so that each is logged once
WEBHOOK_SHOWN = 20              # problems an error answer lists (the log has them all)


class Webhook:
    """external-dns's webhook provider (protocol version 1) on WEBHOOK_ADDRESS, a loopback
    listener of its own: ``GET /`` the zones (its domain filter), ``GET /records`` their
    records, ``POST /records`` the changes, ``POST /adjustendpoints`` the endpoints as
    bindcar would store them.  Every JSON answer has the protocol's media type.

    external-dns retries a 5xx at its next interval and stops on any other error, so
    what could not be applied is a 503 (and a log line naming the record and why); 400
    only for a body that is not the protocol's JSON.
    """

    # (method, path) -> (the method answering, the call's name in metrics)
    ROUTES = {("GET", "/"): ("negotiate", "negotiate"),
              ("GET", "/records"): ("records", "records"),
              ("POST", "/records"): ("apply", "apply"),
              ("POST", "/adjustendpoints"): ("adjust", "adjust"),
              ("GET", "/healthz"): ("healthz", "/healthz")}

    def __init__(self, config, log, named, managed, metrics, audit):
        self.config, self.log, self.named = config, log, named
        self.managed, self.metrics, self.audit = managed, metrics, audit
        self.changes = WebhookChanges(log, named, metrics)
        self.cache = {}                 # zone -> (serial, zones below it, its endpoints' JSON)
        self._allowed = {}              # zone -> whether its allow-update admits the key
        self._logged = collections.OrderedDict()
        self._reading = threading.Lock()        # one body read and parsed at a time

    def changed(self, zone):
        """A zone changed (created, PATCHed, reloaded, updated): its allow-update is read
        again, and its records transferred again (a zone made anew may have the serial
        the old one had)."""
        self._allowed.pop(zone, None)
        self.cache.pop(zone, None)

    # -- the listener's side: one request in, one Response out

    def dispatch(self, method, target, headers, body, client="-"):
        path = target.partition("?")[0]
        route = self.ROUTES.get((method, path))
        response = Response(500, INTERNAL_ERROR, route=route and route[1])
        try:
            _loopback_host(headers.get("Host"))
            if route is None:
                known = sorted(m for m, p in self.ROUTES if p == path)
                raise ApiError(405 if known else 404, f"{method} {path} is not part of "
                               "external-dns's webhook protocol", headers=[
                                   ("Allow", ", ".join(known))] if known else ())
            response.status, response.body = getattr(self, route[0])(
                Request(headers, body, client=client))
        except ApiError as e:
            response.status, response.headers = e.status, e.headers
            response.body = error_body(e.message, e.field, e.details)
        except Exception:
            self.log("error", "unexpected error", method=method, path=path,
                     traceback=_traceback())
        response.content_type = WEBHOOK_MEDIA_TYPE
        return response

    def record_request(self, method, route, status, seconds):
        self.metrics.count_and_observe(
            "bindcar_webhook_requests_total", (route or "unmatched", str(status)),
            "bindcar_webhook_request_duration_seconds", (route or "unmatched",), seconds)

    # -- the calls

    def healthz(self, req):
        return 200, HEALTHY

    def negotiate(self, req):
        """The domain filter: ``include`` the zones (each covers its subdomains).  With
        none, 503: an empty filter would mean every domain to external-dns."""
        zones = self.zones()
        if not zones:
            raise ApiError(503, "bindcar offers external-dns no zone: set WEBHOOK_ZONES, or "
                           "create a primary zone whose allow-update admits the update key "
                           f"{self.named.dns.key_name!r}")
        return 200, json_body({"include": zones})

    def records(self, req):
        """Every record set of the zones, one endpoint per name and type; a zone is
        transferred only when its SOA serial changed since it was last listed.  A zone
        that cannot be read makes it all a 503: never a shorter list."""
        zones = self.zones()
        parts = [self._zone_endpoints(zone, zones) for zone in zones]
        for zone in [z for z in list(self.cache) if z not in zones]:
            self.cache.pop(zone, None)
        return 200, b"[" + b",".join(p for p in parts if p) + b"]"

    def apply(self, req):
        """The changes, one UPDATE per zone (all of it or none): 204 when every one was
        applied, else 503 listing what was not (external-dns plans again)."""
        with self._reading:
            changes = _webhook_changes(_webhook_json(req))
        trail = self._trail(req) if self.audit.fd is not None else None
        problems, applied = self.changes.apply(changes, set(self.zones()), trail)
        if problems:
            shown = [f"{what}: {why}" for what, why in problems[:WEBHOOK_SHOWN]]
            raise ApiError(503, f"{len(problems)} of the changes were not applied ({applied} "
                           "were); external-dns plans again at its next run",
                           details="; ".join(shown))
        return 204, b""

    def _trail(self, req):
        """BIND_AUDIT_LOG: what writes a line for each zone the changes reached (a 503
        first while the trail cannot be written)."""
        self.audit.check()
        return lambda zone, made: self.audit.write({
            "identity": "external-dns (webhook)", "client": req.client,
            "route": "POST /records (webhook)", "operation": "webhook", "zone": zone,
            "changes": made})

    def adjust(self, req):
        """The endpoints as bindcar would store and list them (names lower case, TTL 0 the
        default, values canonical, no providerSpecific); those it can never apply are
        dropped and logged, so that external-dns never plans them."""
        with self._reading:
            items = _webhook_json(req)
        if not isinstance(items, list):
            raise ApiError(400, "the body must be a JSON array of endpoints", "body")
        zones, adjusted = set(self.zones()), []
        for i, item in enumerate(items):
            endpoint = _parse_webhook(zonefile.parse_endpoint, item, f"[{i}]")
            try:
                zone = zonefile.endpoint_zone(endpoint.name, zones)
                if zone is None:
                    raise zonefile.ZoneError("dnsName", "is in no zone bindcar offers")
                owner, rtype, ttl, values = zonefile.endpoint_records(endpoint, zone)
            except zonefile.ZoneError as e:
                self._dropped(endpoint, str(e))
                continue
            targets = [zonefile.endpoint_target(rtype, v) for v in values]
            adjusted.append(_endpoint_json(owner, rtype, ttl, targets, endpoint.labels))
        return 200, json_body(adjusted)

    # -- which zones, and their endpoints

    def zones(self):
        """WEBHOOK_ZONES, else the managed primary zones whose allow-update admits the
        update key (each zone's configuration read once, again after it changes)."""
        if self.config.webhook_zones:
            return list(self.config.webhook_zones)
        if not self.managed.checked.is_set():    # the primaries are known once checked
            raise ApiError(503, "bindcar is still checking the zones it manages against "
                           "named (at start); ask again")
        return sorted(z for z in list(self.managed.primaries) if self._admits_key(z))

    def _admits_key(self, zone):
        """Does the zone's allow-update admit the update key (or an update-policy, or an
        entry bindcar cannot judge, decide)?  False when named lacks the zone; 503 when
        named cannot say: the zones offered are never fewer for a silence."""
        admits = self._allowed.get(zone)
        if admits is None:
            try:
                shown = self.named.shown_zone(zone)
            except ApiError as e:
                if e.status == 404:
                    return False                    # asked again next time
                raise ApiError(503, f"named cannot say whether zone {zone} takes bindcar's "
                               f"updates: {e.message}") from None
            try:
                entries = zonefile.shown_list(shown, "allow-update") or ()
                admits = zonefile.shown_option(shown, "update-policy") is not None or \
                    zonefile.acl_admits(entries, self.named.source_address(),
                                        self.named.dns.key_name) is not False
            except ValueError:
                admits = True                       # named will say, at the UPDATE
            self._allowed[zone] = admits
        return admits

    def _zone_endpoints(self, zone, zones):
        """The zone's endpoints as JSON (without brackets), from the cache while named's
        SOA serial is the one listed; the records of a zone below it (in ``zones``) are
        that zone's, not this one's.  503 naming the zone when it cannot be read."""
        below = tuple(z for z in zones if z.endswith("." + zone))
        try:
            soa = [r for r in self.named.ask("webhook", zone, zone, "SOA") if r.type == "SOA"]
            cached = self.cache.get(zone)
            if soa and cached and cached[:2] == (_soa_serial(soa[0]), below):
                self.metrics.count("bindcar_webhook_zone_reads_total", ("cached",))
                return cached[2]
            records = self.named.transfer(zone)
        except ApiError as e:
            self.log("error", "webhook: a zone cannot be read; the listing fails", zone=zone,
                     error=e.message)
            raise ApiError(503, f"Zone {zone} cannot be read: {e.message}") from None
        self.metrics.count("bindcar_webhook_zone_reads_total", ("transfer",))
        sets = {}
        for r in records:
            if r.type in zonefile.RECORD_TYPES and \
                    zonefile.endpoint_zone(r.name, below + (zone,)) == zone:
                target = zonefile.endpoint_target(r.type, r.value)
                if target is not None:
                    sets.setdefault((r.name, r.type), (r.ttl, []))[1].append(target)
        data = b",".join(json_body(_endpoint_json(name, rtype, ttl, targets))
                         for (name, rtype), (ttl, targets) in sorted(sets.items()))
        self.cache[zone] = (_soa_serial(records[0]), below, data)
        return data

    def _dropped(self, endpoint, reason):
        """Log an endpoint adjust drops: once at warn, then at debug (external-dns asks
        again every minute)."""
        key = (endpoint.name[:256], endpoint.type[:16], reason)
        first = key not in self._logged
        self._logged[key] = True
        if len(self._logged) > WEBHOOK_LOGGED:
            self._logged.popitem(last=False)
        self.log("warn" if first else "debug", "webhook: external-dns asked for a record "
                 "bindcar can never apply; left out", record=" ".join(key[:2]), reason=reason)


class WebhookChanges:
    """``POST /records``: external-dns's changes grouped by zone (the longest suffix of
    each name), one UPDATE per zone, all of it or none.  Each ``updateOld`` record set
    is read under the lock and required as read; a create requires its record set
    absent; a delete takes only the values named.  Too large for one message: a few
    UPDATEs, in order, each all or none, each holding whole names with their registry
    TXT records."""

    def __init__(self, log, named, metrics):
        self.log, self.named, self.metrics = log, named, metrics
        self._transferred = None        # the zone's own records, read once per zone's changes

    def apply(self, changes, zones, trail=None):
        """(problems as [(record, reason)], endpoints applied); ``trail(zone, changes)``
        is told what each zone's UPDATEs made.

        A registry TXT record goes with the record it owns (labels ``ownedRecord``):
        one that cannot be stored holds back that record, not its zone; one in another
        zone (an apex's, ``a-sub.example.com`` in ``example.com``) is sent first, the
        zones taken parents first, and its record is made only once it is in."""
        grouped, problems, unowned, invalid = {}, [], {}, set()
        for kind, index, old, new in changes:
            endpoint = new or old
            what = f"{endpoint.name[:256]} {endpoint.type[:16]}"
            owned, zone = endpoint.labels.get("ownedRecord"), None
            try:
                zone = zonefile.endpoint_zone(endpoint.name, zones)
                if zone is None:
                    raise zonefile.ZoneError("dnsName", "is in no zone bindcar offers")
                if old and new and zonefile.endpoint_zone(old.name, zones) != zone:
                    raise zonefile.ZoneError("dnsName", "updateOld and updateNew name "
                                             "records of different zones")
                field = f"{kind}[{index}]"
                parsed = [zonefile.endpoint_records(e, zone, field) if e else None
                          for e in (old, new)]
            except zonefile.ZoneError as e:
                problems.append((what, str(e), zone))
                if owned:
                    unowned[_plain(owned)] = str(e)
                elif zone:
                    invalid.add(zone)
                continue
            grouped.setdefault(zone, []).append((kind, what, old or new, *parsed))
        elsewhere = {}                  # owned name -> the other zone its registry TXT is in
        for zone, items in grouped.items():
            for _, _, endpoint, _, new in items:
                owned = endpoint.labels.get("ownedRecord")
                if owned and new and _zone_of(owned, zones) != zone:
                    elsewhere[_plain(owned)] = zone
        applied, stored = 0, set()      # owned names whose TXT record went in
        for zone in sorted(grouped, key=lambda z: (z.count("."), z)):
            items, held = [], []
            for item in grouped[zone]:
                name, owns = _plain(item[2].name), "ownedRecord" in item[2].labels
                if item[4] and not owns and name in unowned:
                    held.append((item[1], f"its registry TXT record cannot be stored "
                                 f"({unowned[name]}); external-dns's --txt-prefix (ending "
                                 "in a dot) or --txt-wildcard-replacement may put it right"))
                elif item[4] and not owns and name in elsewhere and name not in stored:
                    held.append((item[1], f"its registry TXT record, in zone "
                                 f"{elsewhere[name]}, was not applied"))
                else:
                    items.append(item)
            problems += [(what, why, zone) for what, why in held]
            if zone in invalid:
                problems += [(item[1], "not applied: another change of this zone is invalid",
                              zone) for item in items]
                continue
            done = set()
            with self.named.lock:
                failures = self._apply_zone(zone, items, done)
            applied += len(done)
            if trail and done:
                trail(zone, [f"{items[i][0]} {items[i][1]}" for i in sorted(done)])
            stored.update(_plain(items[i][2].labels["ownedRecord"]) for i in done
                          if "ownedRecord" in items[i][2].labels)
            if failures:
                problems += [(what, failures.get(i, failures[None]), zone)
                             for i, (_, what, *_) in enumerate(items) if i not in done]
        for what, why, zone in problems:
            self.log("warn", "webhook: a change was not applied", zone=zone, record=what,
                     reason=why)
        self.metrics.count("bindcar_webhook_changes_total", ("applied",), applied)
        self.metrics.count("bindcar_webhook_changes_total", ("not applied",), len(problems))
        return [(what, why) for what, why, _ in problems], applied

    def _apply_zone(self, zone, items, done):
        """Under the lock: the zone's UPDATE(s), the items applied added to ``done``;
        None, or why the rest was not applied, as {item: reason}, the reason for the
        others under None."""
        units, self._transferred = [], None
        try:
            units = self._units(zone, items)
            return self._send_all(zone, units, items, done)
        except _Stale as e:
            return {None: str(e)}
        except dns_proto.DnsUpdateError as e:
            if e.rcode in ("REFUSED", "NOTAUTH"):
                return self._refusal(zone, units, items, done)
            return {None: f"named answered {e.rcode}; see its log"}
        except ApiError as e:
            return {None: e.message}
        return None

    def _send_all(self, zone, units, items, done):
        """The UPDATE(s); when a prerequisite fails because data external-dns did not
        plan for is at a name (a create's record set, a CNAME's name), the zone's other
        names are sent once more without those: such data stays until someone removes
        it, and must not hold up the zone.  A record set no longer as external-dns read
        it stops everything: it plans again from what it reads."""
        families, failures = _families(units, items), None
        for attempt in (1, 2):
            try:
                self._send(zone, families, done)
                return failures
            except dns_proto.DnsUpdateError as e:
                if e.rcode not in ("NXRRSET", "YXRRSET", "YXDOMAIN"):
                    raise
                found, taken, stale = self._culprits(zone, units, items, e.rcode, done)
            failures = {**found, **(failures or {})}
            for family in families:                 # held back with a member in the way
                blocked = [i for i, _ in family if i in taken]
                failures.update((i, f"not applied with {items[blocked[0]][1]}: "
                                 f"{failures[blocked[0]]}") for i, _ in family
                                if blocked and i not in taken)
            families = [f for f in families if not any(i in taken or i in done for i, _ in f)]
            if stale or not taken or not families or attempt == 2:
                return failures
        return failures

    def _refusal(self, zone, units, items, done):
        """named refused the UPDATE: why, in the records API's words (its allow-update,
        a frozen zone, or an MX or NS whose target has no address), on the record at
        fault when there is one."""
        add, whats = [], []
        for i, (_, _, _, records) in units:
            if i not in done:
                add += [zonefile.Record(r.name, r.type, r.ttl, r.value) for r in records]
                whats += [i] * len(records)
        try:
            error = explain_refusal(self.named, zone, add, whats)
        except ApiError as e:
            error = e
        failures = {None: error.message}
        if error.field is not None:
            failures[error.field] = error.message
        return failures

    def _culprits(self, zone, units, items, rcode, done):
        """A prerequisite failed: which record sets are no longer as external-dns read
        them, read again to name them in the log."""
        failures = {None: f"the zone changed since external-dns read it ({rcode}: another "
                    "writer?); this part of the zone's changes was not applied"}
        taken, stale, self._transferred = set(), set(), None      # as named has it now
        with contextlib.suppress(ApiError):
            for i, (require, forbid, _, _) in units:
                if i in done:
                    continue
                for owner, rtype in forbid:
                    there = self._own(zone, owner, rtype)
                    if there and rtype:
                        failures[i] = (f"{owner} {rtype} exists already ({', '.join(there)}), "
                                       "though external-dns did not plan for it; not applied")
                    elif there:
                        failures[i] = (f"{owner} already has {', '.join(there)} data, and a "
                                       "CNAME must be alone at its name; not applied")
                    taken.update([i] if there else [])
                for owner, rtype in {(owner, rtype) for owner, rtype, _ in require}:
                    wanted = sorted(v for o, t, v in require if (o, t) == (owner, rtype))
                    if sorted(self._own(zone, owner, rtype)) != wanted:
                        failures[i] = (f"{items[i][1]} is no longer what external-dns read; "
                                       "nothing of this zone was applied")
                        stale.add(i)
        if stale:
            failures[None] = (f"not applied: {items[min(stale)][1]} is no longer what "
                              "external-dns read; nothing of this zone was applied")
        return failures, taken, stale

    def _units(self, zone, items):
        """Each change as (its index in ``items``, (require, forbid, delete, add)):
        deletes first, then updates, then creates; what is read is read now, under the
        lock.  A record set a delete or update leaves empty is required as read (its
        values, or absent), and only then may a create count on its absence."""
        order = {"delete": 0, "update": 1, "create": 2}
        ranked = sorted(range(len(items)), key=lambda i: order[items[i][0]])
        going, emptied = {}, set()
        for i in ranked:
            kind, what, old, was, _ = items[i]
            if was:
                going[i] = self._going(zone, kind, what, old, was)
                if going[i][0] is not None:
                    emptied.add(tuple(was[:2]))
        cnames = {n[0] for _, _, _, _, n in items if n and n[1] == "CNAME"}
        units = []
        for i in ranked:
            kind, what, old, was, new = items[i]
            require, forbid, delete, add = [], [], [], []
            if was:
                owner, rtype = was[:2]
                required, values = going[i]
                if required is None:                    # some values go, not the set
                    delete = [(owner, rtype, v) for v in values]
                else:
                    require = [(owner, rtype, v) for v in required]
                    forbid = [] if required else [(owner, rtype)]
                    delete = [(owner, rtype, None)] if required else []
            if new:
                owner, rtype, ttl, values = new
                add = [dns_proto.Record(owner, ttl, rtype, v) for v in values]
                forbid += [f for f in self._absent(zone, owner, rtype, emptied, cnames, what)
                           if kind == "create" or f != (owner, rtype)]   # read, above
            units.append((i, (require, forbid, delete, add)))
        return units

    def _going(self, zone, kind, what, old, was):
        """(the record set as read, to require, or None when it is not emptied; the
        values to delete) for a delete or an ``updateOld``.  A registry TXT record read
        otherwise than external-dns made it (another version's text, or missing: its
        ``txt/force-update``) is replaced whole at a name of the registry's own
        (``a-www``), and loses only the values that match at the record's own name (no
        ``--txt-prefix`` before 0.18), where other TXT records may live."""
        owner, rtype = was[:2]
        current = self._read(zone, owner, rtype)
        shown = [zonefile.endpoint_target(rtype, v) for v in current]     # None: a \# value
        if kind == "update" and None not in shown and \
                zonefile.same_targets(rtype, shown, old.targets):
            return current, current
        current = self._own(zone, owner, rtype)     # not a wildcard's answer
        shown = [zonefile.endpoint_target(rtype, v) for v in current]
        matching = [v for v, t in zip(current, shown) if t is not None and any(
            zonefile.same_targets(rtype, [t], [x]) for x in old.targets)]
        registry = rtype == "TXT" and old.labels.get("ownedRecord")
        if kind == "update" and registry and \
                registry.lower().rstrip(".") != owner.rstrip("."):
            return current, current         # a name of the registry's own: all of it goes
        if kind == "update" and not registry:
            raise _Stale(f"{what} is no longer what external-dns read (it holds "
                         f"{[s for s in shown if s is not None] or 'nothing'}); nothing of "
                         "this zone was applied")
        return (current if len(matching) == len(current) else None), matching

    def _absent(self, zone, owner, rtype, emptied, cnames, what):
        """What a new record set requires absent (``forbid``): its own record set, unless
        these changes empty it; for a CNAME, any data at its name, else a CNAME there.
        named would otherwise keep both, or drop one without a word (RFC 2136 §3.4.2.2)."""
        if rtype == "CNAME" and not any(name == owner for name, _ in emptied):
            return [(owner, None)]                      # the name holds nothing at all
        if rtype == "CNAME":                            # empty, but for what goes there
            going = {t for name, t in emptied if name == owner}
            there = set(self._own(zone, owner, None)) - going - {"CNAME", "RRSIG", "NSEC"}
            if there:
                raise _Stale(f"{what}: the name has {', '.join(sorted(there))} data, and a "
                             "CNAME must be alone at its name (external-dns's --txt-prefix "
                             "keeps its registry's TXT records apart); nothing of this zone "
                             "was applied")
            return [] if (owner, rtype) in emptied else [(owner, rtype)]
        if owner in cnames:
            raise _Stale(f"{what}: a CNAME these changes make at the name cannot have other "
                         "data; nothing of this zone was applied")
        return [(owner, t) for t in (rtype, "CNAME") if (owner, t) not in emptied]

    def _read(self, zone, owner, rtype):
        """The values a query finds: the record set itself, or a wildcard's answer
        (which UPDATE prerequisites never see: ``_own`` tells them apart)."""
        return [r.value for r in self.named.ask("webhook", zone, owner, rtype)
                if r.name == owner and r.type == rtype]

    def _own(self, zone, owner, rtype):
        """The zone's own values at ``owner`` (``rtype`` None: its types), by AXFR, read
        once for the zone's changes: where a query's answer may be a wildcard's."""
        if self._transferred is None:
            self._transferred = {}
            for r in self.named.transfer(zone):
                self._transferred.setdefault((r.name, r.type), []).append(r.value)
        if rtype is None:
            return sorted({t for n, t in self._transferred if n == owner})
        return self._transferred.get((owner, rtype), [])

    def _send(self, zone, families, done):
        """One UPDATE of every family of units; one too large for a message is halved,
        and each half sent in turn (the first failure stops the rest).  The indexes of
        the items applied go into ``done``."""
        merged = [[], [], [], []]
        for family in families:
            for _, unit in family:
                for into, part in zip(merged, unit):
                    into += part
        require, forbid, delete, add = merged
        try:
            self.named.send_update("webhook", zone, add, delete=delete, require=require,
                                   forbid=forbid)
        except dns_proto.MessageTooLarge:
            if len(families) == 1:
                raise _Stale("these record sets do not fit in one UPDATE message; not "
                             "applied") from None
            self._send(zone, families[:len(families) // 2], done)
            self._send(zone, families[len(families) // 2:], done)
            return
        done.update(i for family in families for i, _ in family)


def _plain(name):
    return name.lower().rstrip(".")


def _zone_of(name, zones):
    """endpoint_zone, None for a name too long to be one."""
    try:
        return zonefile.endpoint_zone(name, zones)
    except zonefile.ZoneError:
        return None


def _families(units, items):
    """The units in families that stay in one UPDATE: a name's changes with its
    registry TXT record's (labels ``ownedRecord``), in the order of their first unit."""
    families = {}
    for i, unit in units:
        _, _, endpoint, was, new = items[i]
        key = endpoint.labels.get("ownedRecord", (was or new)[0]).lower().rstrip(".")
        families.setdefault(key, []).append((i, unit))
    return list(families.values())


class _Stale(Exception):
    """A change of one zone that cannot go: nothing of the zone is applied."""


def _loopback_host(host):
    """The webhook answers only a Host of loopback: no web page rebinds its name to it."""
    if not _is_loopback(_host_name(host or "localhost")):
        raise ApiError(421, f"Host {host!r}: the webhook answers localhost and loopback "
                       "addresses only")


def _webhook_json(req):
    """The body as JSON, of the protocol's media type (415 otherwise: no web page can
    send it without asking), its objects and values counted before it is parsed."""
    body = req.raw(("application/external.dns.webhook+json", "application/json"),
                   WEBHOOK_MEDIA_TYPE)
    if body.count(b"{") > WEBHOOK_MAX_OBJECTS or body.count(b",") > WEBHOOK_MAX_VALUES:
        raise ApiError(413, f"the body holds more than {WEBHOOK_MAX_OBJECTS} objects or "
                       f"{WEBHOOK_MAX_VALUES} values")
    return parse_json(body)


def _webhook_changes(body):
    """plan.Changes -> [(kind, index, old Endpoint or None, new Endpoint or None)]: keys
    matched without case (external-dns before 0.17 sent ``Create``...), null as []."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object of changes", "body")
    lists = {"create": [], "updateold": [], "updatenew": [], "delete": []}
    for key, value in body.items():
        if key.lower() in lists and value is not None:
            if not isinstance(value, list):
                raise ApiError(400, f"{key}: must be an array of endpoints", key)
            lists[key.lower()] = [_parse_webhook(zonefile.parse_endpoint, item, f"{key}[{i}]")
                                  for i, item in enumerate(value)]
    if len(lists["updateold"]) != len(lists["updatenew"]):
        raise ApiError(400, "updateOld and updateNew must pair, one for one", "updateOld")
    return ([("delete", i, e, None) for i, e in enumerate(lists["delete"])]
            + [("update", i, old, new) for i, (old, new) in
               enumerate(zip(lists["updateold"], lists["updatenew"]))]
            + [("create", i, None, e) for i, e in enumerate(lists["create"])])


def _parse_webhook(parse, data, field):
    try:
        return parse(data, field)
    except zonefile.ZoneError as e:
        raise ApiError(400, str(e), e.field) from None


def _endpoint_json(owner, rtype, ttl, targets, labels=None):
    endpoint = {"dnsName": owner.rstrip("."), "targets": targets, "recordType": rtype,
                "recordTTL": ttl}
    if labels:
        endpoint["labels"] = labels
    return endpoint


def _soa_serial(record):
    return int(record.value.split()[2])


# ---------------------------------------------------------------- OpenAPI

def _schema_ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


_STRINGS = {"type": "array", "items": {"type": "string"}}
_NULL_ONLY = {"type": "null"}     # a field this API does not know may come, as null only,
_ABSENT_ONLY = {"anyOf": [_NULL_ONLY, {"type": "array", "maxItems": 0},     # or in a create
                          {"type": "object", "maxProperties": 0}]}          # as [] or {} too
_IGNORED_BY_SECONDARY = "ignored for a secondary zone"
SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "details"], "properties": {
        "error": {"type": "string"}, "details": {"type": ["string", "null"]},
        "field": {"type": "string", "description": "JSON path of the field at fault"}}},
    "ZoneResponse": {"type": "object", "required": ["success", "message", "details"],
                     "properties": {
                         "success": {"type": "boolean"}, "message": {"type": "string"},
                         "details": {"type": ["string", "null"],
                                     "description": "named's text; null when it has none"}}},
    "Health": {"type": "object", "properties": {"status": {"const": "healthy"},
                                                "version": {"type": "string"}}},
    "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"},
                                               "checks": _STRINGS}},
    "ServerStatus": {"type": "object", "properties": {"status": {"type": "string"}}},
    "ZoneList": {"type": "object", "properties": {
        "zones": _STRINGS, "count": {"type": "integer", "description": "all that match"},
        "next": {"type": "string", "description": "with limit: the after of the next page, "
                                                  "while more remain"}}},
    "ZoneInfo": {"type": "object", "required": ["name", "zoneType"], "properties": {
        "name": {"type": "string"}, "zoneType": {"enum": ["primary", "secondary"]},
        "serial": {"type": "integer"}, "filePath": {"type": "string"}}},
    "Soa": {"type": "object", "additionalProperties": _ABSENT_ONLY,
            "required": ["primaryNs", "adminEmail"], "properties": {
                "primaryNs": {"type": "string"},
                "adminEmail": {"type": "string",
                               "description": "admin.example.com. or admin@example.com"},
                "serial": {"type": ["integer", "null"], "minimum": 0,
                           "description": "default YYYYMMDD01, today (UTC)"},
                **{k: {"type": ["integer", "null"], "minimum": 0,
                       "description": f"default {zonefile.SOA_DEFAULTS[k]}"}
                   for k in ("refresh", "retry", "expire", "negativeTtl")}}},
    "Record": {"type": "object", "additionalProperties": _ABSENT_ONLY,
               "required": ["name", "type", "value"], "properties": {
                   "name": {"type": "string", "description": "@, relative or absolute"},
                   "type": {"enum": list(zonefile.RECORD_TYPES)},
                   "value": {"type": "string"},
                   "ttl": {"type": ["integer", "null"], "minimum": 0},
                   "priority": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535,
                                "description": "MX and SRV only"}}},
    "ZoneConfig": {
        "type": "object", "additionalProperties": _ABSENT_ONLY,
        "description": "null, [] and {} mean a field is absent; [] for an address list "
                       "means no one",
        "properties": {
            "ttl": {"type": "integer", "minimum": 0,
                    "description": "required for a primary zone; " + _IGNORED_BY_SECONDARY},
            "soa": dict(_schema_ref("Soa"), description="required for a primary zone; "
                        + _IGNORED_BY_SECONDARY),
            "nameServers": dict(_STRINGS, description="required for a primary zone; "
                                + _IGNORED_BY_SECONDARY),
            "nameServerIps": {"type": "object", "additionalProperties": {"type": "string"},
                              "description": "glue of in-zone name servers; "
                                             + _IGNORED_BY_SECONDARY},
            "records": {"type": "array", "items": _schema_ref("Record"),
                        "description": "primary zones only ([] is accepted for a secondary)"},
            "alsoNotify": {"type": ["array", "null"], "items": {"type": "string"},
                           "description": "IP, IP:port, [IPv6]:port or 'IP port N'"},
            "allowTransfer": {"type": ["array", "null"], "items": {"type": "string"},
                              "description": "addresses, networks, any/none; [] means no one"},
            "allowUpdate": {"type": ["array", "null"], "items": {"type": "string"},
                            "description": "addresses, networks; " + _IGNORED_BY_SECONDARY},
            "primaries": {"type": ["array", "null"], "items": {"type": "string"},
                          "description": "required for a secondary zone: IP, IP:port, "
                                         "[IPv6]:port or 'IP port N'"},
            "dnssecPolicy": {"type": ["string", "null"]},
            "inlineSigning": {"type": ["boolean", "null"]}}},
    "CreateZone": {"type": "object", "additionalProperties": _ABSENT_ONLY,
                   "required": ["zoneName", "zoneType", "zoneConfig"], "properties": {
                       "zoneName": {"type": "string"},
                       "zoneType": {"enum": sorted(zonefile.ZONE_TYPES)},
                       "zoneConfig": _schema_ref("ZoneConfig"),
                       "updateKeyName": {"type": ["string", "null"],
                                         "description": "TSIG key allowed to update a "
                                                        "primary zone; "
                                                        + _IGNORED_BY_SECONDARY}}},
    "ModifyZone": {"type": "object", "additionalProperties": _NULL_ONLY, "minProperties": 1,
                   "properties": {
                       "alsoNotify": {"type": ["array", "null"], "items": {"type": "string"},
                                      "description": "replaces the list; [] removes it"},
                       "allowTransfer": {"type": ["array", "null"], "items": {"type": "string"},
                                         "description": "replaces the list; [] means no one "
                                                        "(allow-transfer { none; })"},
                       "allowUpdate": {"type": ["array", "null"], "items": {"type": "string"},
                                       "description": "replaces the addresses; [] removes "
                                                      "them (the update key stays)"}}},
    "AddRecord": {"type": "object", "additionalProperties": _NULL_ONLY,
                  "required": ["name", "type", "value"], "properties": {
                      "name": {"type": "string", "description": "@, relative, or absolute "
                                                                "inside the zone"},
                      "type": {"enum": list(zonefile.RECORD_TYPES)},
                      "value": {"type": "string", "description": "targets absolute or "
                                                                 "relative to the zone"},
                      "ttl": {"type": ["integer", "null"], "minimum": 0,
                              "description": f"default {zonefile.DEFAULT_RECORD_TTL}"},
                      "priority": {"type": ["integer", "null"], "minimum": 0,
                                   "maximum": 65535, "description": "MX and SRV only"}}},
    "UpdateRecord": {"type": "object", "additionalProperties": _NULL_ONLY,
                     "required": ["name", "type", "currentValue", "newValue"], "properties": {
                         "name": {"type": "string"},
                         "type": {"enum": list(zonefile.RECORD_TYPES)},
                         "currentValue": {"type": "string",
                                          "description": "must exist, else 404"},
                         "newValue": {"type": "string"},
                         "ttl": {"type": ["integer", "null"], "minimum": 0,
                                 "description": f"default {zonefile.DEFAULT_RECORD_TTL}"},
                         "priority": {"type": ["integer", "null"], "minimum": 0,
                                      "maximum": 65535,
                                      "description": "MX and SRV: goes with both values"}}},
    "RemoveRecord": {"type": "object", "additionalProperties": _NULL_ONLY,
                     "required": ["name", "type"], "properties": {
                         "name": {"type": "string"},
                         "type": {"enum": list(zonefile.RECORD_TYPES)},
                         "value": {"type": ["string", "null"],
                                   "description": "absent: the whole record set"},
                         "priority": {"type": ["integer", "null"], "minimum": 0,
                                      "maximum": 65535}}},
    "RRsetChanges": {"type": "object", "additionalProperties": _NULL_ONLY,
                     "required": ["rrsets"], "properties": {"rrsets": {
                         "type": "array", "minItems": 1, "maxItems": zonefile.MAX_RRSETS,
                         "items": {"type": "object", "additionalProperties": _NULL_ONLY,
                                   "required": ["name", "type", "changetype"], "properties": {
                                       "name": {"type": "string"},
                                       "type": {"enum": list(zonefile.RECORD_TYPES)},
                                       "ttl": {"type": ["integer", "null"], "minimum": 0},
                                       "changetype": {"enum": ["REPLACE", "DELETE"],
                                                      "description": "any case"},
                                       "records": dict(_STRINGS, description=(
                                           "REPLACE: the new values, MX and SRV with their "
                                           "priority first; [] deletes"))}}}}},
    "RecordResponse": {"type": "object", "required": ["success", "message", "details"],
                       "properties": {"success": {"type": "boolean"},
                                      "message": {"type": "string"},
                                      "details": {"type": "object", "properties": {
                                          "zone": {"type": "string"},
                                          "record": {"type": "object"},
                                          "rrsets": {"type": "integer"}}}}},
    "ListedRecord": {"type": "object", "required": ["name", "type", "value", "ttl"],
                     "properties": {
                         "name": {"type": "string", "description": "relative to the zone, "
                                                                   "@ for the apex"},
                         "type": {"type": "string", "description": "as dig names it; "
                                  "TYPEnnn for a type without a name"},
                         "value": {"type": "string", "description": "as dig prints it (RFC "
                                   "3597 \\# form for types without a parser)"},
                         "ttl": {"type": "integer"},
                         "priority": {"type": "integer", "description": "MX and SRV"}}},
    "Catalog": {"type": "object", "properties": {
        "zone": {"type": "string"}, "serial": {"type": "integer"},
        "members": {"type": "integer"},
        "missing": dict(_STRINGS, description="primary zones bindcar manages that are not "
                                              "members; [] when healthy"),
        "orphans": dict(_STRINGS, description="members that are not such a zone; [] when "
                                              "healthy"),
        "healthy": {"type": "boolean", "description": "nothing missing or orphaned, and "
                    "every secondary answers, has been checked and serves every member at "
                    "the primary's serial"},
        "refused": dict(_STRINGS, description="members whose allow-transfer leaves a "
                                              "secondary out"),
        "secondaries": {"type": "array", "items": {"type": "object", "properties": {
            "server": {"type": "string", "description": "as BIND_SECONDARIES names it"},
            "address": {"type": "string", "description": "one of its addresses now"},
            "reachable": {"type": ["boolean", "null"]},
            "catalogSerial": {"type": ["integer", "null"]},
            "checked": {"type": "boolean",
                        "description": "every member asked since it last came back"},
            "lagging": dict(_STRINGS, description="zones it serves behind the primary, "
                                                  "or lacks, being NOTIFYed"),
            "refused": _STRINGS,
            "since": {"type": "string", "description": "when this state began (UTC)"}}}}}},
    "CatalogRepair": {"type": "object", "properties": {
        "zone": {"type": "string"}, "added": _STRINGS, "removed": _STRINGS}},
    "Propagation": {"type": "object", "properties": {
        "zone": {"type": "string"}, "serial": {"type": "integer"},
        "secondaries": {"type": "array", "items": {"type": "object", "properties": {
            "server": {"type": "string", "description": "as BIND_SECONDARIES names it"},
            "address": {"type": ["string", "null"], "description": "an address it has now"},
            "serial": {"type": ["integer", "null"]},
            "inSync": {"type": "boolean"}, "error": {"type": ["string", "null"]}}}}}},
    "Dnssec": {"type": "object", "required": ["zone", "signed"], "properties": {
        "zone": {"type": "string"}, "signed": {"type": "boolean"},
        "policy": {"type": "string"},
        "keys": {"type": "array", "items": {"type": "object", "description": "a key of "
                 "rndc dnssec -status: tag, algorithm, role (KSK, ZSK, CSK), published, "
                 "keySigning, zoneSigning, rollover, and the states goal, dnskey, ds, "
                 "zoneRrsig, keyRrsig"}},
        "dnskeys": {"type": "array", "items": {"type": "object"}},
        "ds": {"type": "array", "items": {"type": "object", "properties": {
            "keyTag": {"type": "integer"}, "algorithm": {"type": "integer"},
            "digestType": {"type": "integer"}, "digest": {"type": "string"},
            "record": {"type": "string"}}}},
        "cds": {"type": "array", "items": {"type": "object"}},
        "cdnskey": {"type": "array", "items": {"type": "object"}}}},
    "CheckDs": {"type": "object", "properties": {
        "published": {"type": "boolean"}, "withdrawn": {"type": "boolean"},
        "key": {"type": "integer", "description": "the key's tag (all KSKs without it)"}}},
    "History": {"type": "object", "properties": {
        "zone": {"type": "string"},
        "entries": {"type": "array", "items": {"type": "object", "properties": {
            "time": {"type": "string"}, "requestId": {"type": "string"},
            "identity": {"type": "string", "description": "the ServiceAccount, or the "
                         "token's mode and the first 12 hex digits of its SHA-256"},
            "client": {"type": "string"}, "route": {"type": "string"},
            "operation": {"type": "string"}, "zone": {"type": "string"},
            "changes": _STRINGS, "serialBefore": {"type": "integer"},
            "serialAfter": {"type": "integer"}}}}}},
    "RecordList": {"type": "object", "required": ["zone", "serial", "records"],
                   "properties": {"zone": {"type": "string"}, "serial": {"type": "integer"},
                                  "records": {"type": "array",
                                              "items": _schema_ref("ListedRecord"),
                                              "description": "names relative to the zone; "
                                                             "a create takes them as they are"},
                                  "next": {"type": "string", "description": "with limit: "
                                           "<name>/<type>, the after of the next page"}}},
}

# handler -> (summary, success status, response schema, request schema, extra error statuses)
API_DOCS = {
    "health": ("The process is up", 200, "Health", None, ()),
    "ready": ("The zone directory is writable and named answers", 200, "Ready", None,
              ((503, "Ready"),)),
    "metrics_page": ("Prometheus metrics, text format 0.0.4", 200, None, None, ()),
    "openapi": ("This document (BIND_ENABLE_DOCS=true)", 200, None, None, (404,)),
    "docs": ("This document as one HTML page (BIND_ENABLE_DOCS=true)", 200, None, None,
             (404,)),
    "server_status": ("rndc status", 200, "ServerStatus", None, ()),
    "server_reload": ("rndc reload", 200, "ZoneResponse", None, (409,)),
    "create_zone": ("Create a zone", 201, "ZoneResponse", "CreateZone",
                    (400, 409, 411, 413, 415, 507)),
    "list_zones": ("Zones bindcar manages, sorted; filtered and paged on request", 200,
                   "ZoneList", None, (400,)),
    "get_zone": ("Type, serial and file of a zone", 200, "ZoneInfo", None, (400, 404)),
    "modify_zone": ("modzone: alsoNotify, allowTransfer, allowUpdate", 200, "ZoneResponse",
                    "ModifyZone", (400, 404, 409, 411, 413, 415)),
    "delete_zone": ("delzone, then remove the zone's files", 200, "ZoneResponse", None,
                    (400, 404, 409)),
    "reload_zone": ("rndc reload <zone>", 200, "ZoneResponse", None, (400, 404, 409)),
    "zone_status": ("rndc zonestatus <zone>", 200, "ZoneResponse", None, (400, 404, 409)),
    "freeze_zone": ("rndc freeze <zone>", 200, "ZoneResponse", None, (400, 404, 409)),
    "thaw_zone": ("rndc thaw <zone>", 200, "ZoneResponse", None, (400, 404, 409)),
    "notify_zone": ("rndc notify <zone>", 200, "ZoneResponse", None, (400, 404, 409)),
    "retransfer_zone": ("rndc retransfer <zone>", 200, "ZoneResponse", None, (400, 404, 409)),
    "records.listing": ("The zone's records, read by AXFR; SOA and DNSSEC records only with "
                     "all=true", 200, "RecordList", None, (400, 404, 409, 503)),
    "records.add": ("Add one record (RFC 2136 UPDATE)", 201, "RecordResponse", "AddRecord",
                   (400, 404, 409, 411, 413, 415, 503)),
    "records.replace": ("Replace one value by another in one UPDATE (404 when the current "
                      "value is not there)", 200, "RecordResponse", "UpdateRecord",
                      (400, 404, 409, 411, 413, 415, 503)),
    "records.remove": ("Delete one value, or the whole record set (404 when not there)", 200,
                      "RecordResponse", "RemoveRecord", (400, 404, 409, 411, 413, 415, 503)),
    "records.change": ("Replace or delete record sets in one UPDATE: all or nothing", 200,
                      "RecordResponse", "RRsetChanges", (400, 404, 409, 411, 413, 415, 503)),
}
API_DOCS.update({
    "audit.history": ("The zone's lines of the audit trail (BIND_AUDIT_LOG), newest first",
                      200, "History", None, (400, 404)),
    "dnssec.status": ("A zone's DNSSEC policy, keys as named reports them, DNSKEYs, the DS "
                      "records for its parent (SHA-256, SHA-384), CDS and CDNSKEY", 200,
                      "Dnssec", None, (400, 404)),
    "dnssec.checkds": ("rndc dnssec -checkds: the parent has (or no longer has) a key's DS",
                       200, "ZoneResponse", "CheckDs", (400, 404, 409, 411, 415)),
    "catalog.status": ("The catalog zone, its members, and any zone missing from it or "
                       "member without a zone (BIND_CATALOG_ZONE)", 200, "Catalog", None,
                       (404, 409, 503)),
    "catalog.repair": ("Settle any create or delete named left unknown, then make the "
                       "catalog's members the primary zones bindcar manages", 200,
                       "CatalogRepair", None, (404, 409, 503)),
    "catalog.propagation": ("The zone's SOA serial here and on each of BIND_SECONDARIES",
                            200, "Propagation", None, (400, 404, 409, 503)),
})
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": 10000},
          "description": "a page of at most this many (with after); next gives the cursor "
                         "of the next page while more remain"}
QUERY_PARAMETERS = {"audit.history": [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                "maximum": 1000},
     "description": "at most this many lines (100 unless given)"}],
    "records.listing": [
    {"name": "name", "in": "query", "schema": {"type": "string"},
     "description": "only this name (@, relative or absolute)"},
    {"name": "type", "in": "query", "schema": {"type": "string"},
     "description": "only this type"},
    {"name": "all", "in": "query", "schema": {"enum": ["true", "false"]},
     "description": "true: SOA and DNSSEC records too"},
    _LIMIT, {"name": "after", "in": "query", "schema": {"type": "string"},
             "description": "<name>/<type> as listed: the page after that record set "
                            "(records sorted by name and type; a set is never split)"}],
    "list_zones": [
    {"name": "type", "in": "query", "schema": {"enum": ["primary", "secondary"]},
     "description": "only zones of this type"},
    {"name": "suffix", "in": "query", "schema": {"type": "string"},
     "description": "only this zone and the zones below it"},
    _LIMIT, {"name": "after", "in": "query", "schema": {"type": "string"},
             "description": "the page after this zone name (zones sorted by name)"}]}

_IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
             "description": 'ETags this API gave ("<SOA serial>", comma-separated) or *: '
                            "the change is made only if the zone's SOA serial is one of "
                            "them, checked by named as an UPDATE prerequisite (412 if not)"}
HEADER_PARAMETERS = {
    "records.add": [_IF_MATCH, {
        "name": "If-None-Match", "in": "header", "schema": {"enum": ["*"]},
        "description": "*: only if the name has no record of that type (412 if it has)"}],
    "records.replace": [_IF_MATCH], "records.remove": [_IF_MATCH],
    "records.change": [_IF_MATCH], "modify_zone": [_IF_MATCH]}
ETAG_ROUTES = ("get_zone", "zone_status", "records.listing", "records.add",
               "records.replace", "records.remove", "records.change", "modify_zone")
ETAG = {"ETag": {"schema": {"type": "string"}, "description": 'the zone\'s SOA serial, '
                 'quoted ("2026120601"): as read, or as this change left it'}}
REQUEST_ID = {"X-Request-Id": {"schema": {"type": "string"}, "description": "with "
                               "BIND_AUDIT_LOG: the requestId of this change's line"}}


def openapi_document():
    """OpenAPI 3.1 for every route of App.ROUTES, with bodies and errors."""
    error = {"content": {"application/json": {"schema": _schema_ref("Error")}}}
    paths = {}
    for method, template, handler, auth, operation_name, _ in App.ROUTES:
        summary, status, schema, request, errors = API_DOCS[handler]
        short = template in ("/health", "/ready")       # the probes' short aliases
        operation = {"operationId": handler + ("_short" if short else ""),
                     "summary": summary, "responses": {}}
        if schema:
            operation["responses"][str(status)] = {
                "description": summary,
                "content": {"application/json": {"schema": _schema_ref(schema)}}}
        else:
            operation["responses"][str(status)] = {"description": summary}
        headers = {**(ETAG if handler in ETAG_ROUTES else {}),
                   **(REQUEST_ID if operation_name in AUDITED else {})}
        if headers:
            operation["responses"][str(status)]["headers"] = headers
        bodies = dict(e if isinstance(e, tuple) else (e, "Error") for e in errors)
        if handler in HEADER_PARAMETERS:
            bodies[412] = "Error"
        for code in ({401, 403, 429, 503} if auth else set()) | \
                ({503} if "rndc" in summary or handler.endswith("_zone") else set()):
            bodies.setdefault(code, "Error")
        for code, body_schema in sorted(bodies.items()):
            operation["responses"][str(code)] = {
                "description": STATUS_PHRASES[code],
                "content": {"application/json": {"schema": _schema_ref(body_schema)}}}
        operation["responses"]["500"] = dict(error, description="Internal server error")
        if auth:
            operation["security"] = [{"bearer": []}]
        parameters = []
        if "{name}" in template:
            parameters = [{"name": "name", "in": "path", "required": True,
                           "schema": {"type": "string"},
                           "description": "zone name; a final dot and upper case are "
                                          "accepted"}]
        parameters += QUERY_PARAMETERS.get(handler, []) + HEADER_PARAMETERS.get(handler, [])
        if parameters:
            operation["parameters"] = parameters
        if request:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema_ref(request)}}}
        paths.setdefault(template, {})[method.lower()] = operation
    return {"openapi": "3.1.0",
            "info": {"title": "bindcar", "version": VERSION,
                     "description": "Manage BIND9 zones over RNDC, their records over DNS "
                                    "UPDATE, and a catalog zone for BIND secondaries."},
            "paths": paths,
            "components": {"schemas": SCHEMAS, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}}}}


# The docs page: one HTML document made from openapi_document(), with its style inline
# and nothing to fetch (hosts are often air-gapped); the CSP header forbids the rest.
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_DOCS_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;
padding:0 1em;color:#222}h2{margin-top:2em;font-size:1.1em}code{font-size:.95em}
.m{display:inline-block;min-width:4.5em;font-weight:bold}table{border-collapse:collapse;
margin:.4em 0 1em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.o{color:#777}"""


def _schema_type(schema):
    """A schema's type in a few words: ``string``, ``integer or null``, ``[Record]``."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kinds = schema.get("type", "any")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    words = []
    for kind in kinds:
        if kind == "array":
            words.append(f"[{_schema_type(schema.get('items', {}))}]")
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict) \
                and "properties" not in schema:
            words.append(f"{{name: {_schema_type(schema['additionalProperties'])}}}")
        else:
            words.append(kind)
    return " or ".join(words)


def _field_rows(schema, schemas, prefix="", depth=0):
    """(path, type, required, notes) of every field of ``schema``, nested ones too."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    rows = []
    for name, field in schema.get("properties", {}).items():
        path = prefix + name
        rows.append((path, _schema_type(field), name in schema.get("required", ()),
                     field.get("description", "")))
        inner = field.get("items", field) if field.get("type") == "array" else field
        if "$ref" in inner and depth < 3:
            suffix = "[]." if inner is not field else "."
            rows += _field_rows(inner, schemas, path + suffix, depth + 1)
    return rows


def _table(head, rows):
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "".join(out) + "</table>"


def _fields_table(schema, schemas):
    e = html.escape
    return _table(("field", "type", "required", "notes"), [
        (f"<code>{e(f)}</code>", e(t), "yes" if r else "", e(n))
        for f, t, r, n in _field_rows(schema, schemas)])


def docs_page(document):
    """The OpenAPI document as one self-contained HTML page: every route, its path
    parameter, its body's fields and its statuses."""
    e = html.escape
    schemas = document["components"]["schemas"]
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           f"<title>{e(document['info']['title'])} API</title>",
           f"<style>{_DOCS_STYLE}</style></head><body>",
           f"<h1>{e(document['info']['title'])} {e(document['info']['version'])}</h1>",
           f"<p>{e(document['info']['description'])} Every body is JSON. Routes marked "
           "<b>auth</b> need <code>Authorization: Bearer &lt;token&gt;</code>. The same "
           "document as OpenAPI 3.1: <a href=openapi.json><code>/api/v1/openapi.json"
           "</code></a>.</p><ul>"]
    operations = [(path, method, op) for path, ops in document["paths"].items()
                  for method, op in ops.items()]
    for path, method, op in operations:
        out.append(f"<li><a href=#{e(op['operationId'])}><span class=m>{method.upper()}"
                   f"</span><code>{e(path)}</code></a> {e(op['summary'])}</li>")
    out.append("</ul>")
    for path, method, op in operations:
        auth = " <b>auth</b>" if op.get("security") else " <span class=o>open</span>"
        out.append(f"<h2 id={e(op['operationId'])}><span class=m>{method.upper()}</span>"
                   f"<code>{e(path)}</code>{auth}</h2><p>{e(op['summary'])}</p>")
        for param in op.get("parameters", ()):
            out.append(f"<p>Path parameter <code>{{{e(param['name'])}}}</code>: "
                       f"{e(param['description'])}.</p>")
        request = op.get("requestBody")
        if request:
            schema = request["content"]["application/json"]["schema"]
            out.append(f"<p>Body: <code>{e(_schema_type(schema))}</code>. A field "
                       "not listed is refused unless it is null (or, in a create, [] or "
                       "{}).</p>")
            out.append(_fields_table(schema, schemas))
        rows = []
        for status, response in op["responses"].items():
            content = response.get("content", {}).get("application/json")
            kind = _schema_type(content["schema"]) if content else ""
            rows.append((e(status), e(response["description"]), f"<code>{e(kind)}</code>"))
        out.append(_table(("status", "meaning", "body"), rows))
    out.append("<h2>Bodies</h2>")
    for name, schema in schemas.items():
        out.append(f"<h3 id=schema-{e(name)}><code>{e(name)}</code></h3>")
        out.append(_fields_table(schema, schemas))
    out.append("</body></html>")
    return "\n".join(out).encode()


# ---------------------------------------------------------------- HTTP

STATUS_PHRASES = {s.value: s.phrase for s in http.HTTPStatus}
MAX_HEADERS = 100               # header lines in one request; more is a 431
MAX_HEAD = 32768                # bytes of request line and headers together; more: 414/431
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HOST = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")


class Headers:
    """Request headers: names case-insensitive, every value kept."""

    __slots__ = ("_values",)

    def __init__(self):
        self._values = {}

    def add(self, name, value):
        self._values.setdefault(name.lower(), []).append(value)

    def get(self, name, default=None):
        values = self._values.get(name.lower())
        return values[0] if values else default

    def get_all(self, name):
        return self._values.get(name.lower(), [])


def render_response(status, body, headers=(), close=False, content_type="application/json"):
    """Status line, headers and body as one bytes object: one sendall, no Nagle stall."""
    head = [f"HTTP/1.1 {status} {STATUS_PHRASES.get(status, 'Unknown')}"]
    if status != 204:                           # RFC 9110 §8.6: never on a 204
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


OVERLOADED = render_response(503, error_body("Too many connections"), close=True)
CLIENT_OVERLOADED = render_response(
    503, error_body("Too many connections from this address"), close=True)


class Handler(http.server.BaseHTTPRequestHandler):
    """Reads one request within the limits, hands it to ``App.dispatch``, writes once."""

    protocol_version = "HTTP/1.1"
    server_version = f"bindcar/{VERSION}"
    timeout = None       # blocking sockets: a timeout would poll() before every recv and
                         # send (a quarter of the throughput); Server.reap enforces it

    def setup(self):
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.set_state(self.connection, "idle")

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.forget(self.connection)

    def handle_one_request(self):
        """The standard library's, with the request line held to MAX_HEAD (not 64 KiB)."""
        self.raw_requestline = self.rfile.readline(MAX_HEAD + 1)
        if len(self.raw_requestline) > MAX_HEAD:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414, f"The request line is longer than {MAX_HEAD} bytes")
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"Unsupported method {self.command!r}")
            return
        method()

    def parse_request(self):
        """The request line and headers, strictly; False after answering an error.

        Replaces the standard library's parser (which runs every header block
        through the email package): a request line of exactly three parts,
        HTTP/1.0 or 1.1, at most MAX_HEADERS header lines of well-formed names,
        all of it within MAX_HEAD bytes, so that a connection holds little however
        long its sender goes on (250 senders of 6 MB heads once took 1.6 GB),
        no obsolete line folding, exactly one Host in HTTP/1.1.
        """
        self.command, self.close_connection = None, True
        self.request_version = "HTTP/0.9"
        if not self.server.set_state(self.connection, "reading"):
            return False                        # the stop closed this connection
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split(" ")
        if len(words) != 3 or not words[1].startswith("/") or not _TOKEN.match(words[0]):
            self.send_error(400, "Bad request line")
            return False
        self.command, self.path, version = words
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.1"
            # A bounded count of digits: int() raises past 4,300 of them.
            major = re.fullmatch(r"HTTP/(\d{1,3})\.\d{1,3}", version)
            if major and int(major.group(1)) >= 2:
                self.send_error(505, f"HTTP version {version} is not supported")
            else:
                self.send_error(400, f"Bad HTTP version {version!r}")
            return False
        self.request_version = version
        headers = self.headers = Headers()
        left = MAX_HEAD - len(self.raw_requestline)
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(left + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            left -= len(line)
            if left < 0:
                self.send_error(431, f"The request line and headers are longer than "
                                f"{MAX_HEAD} bytes")
                return False
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon or not _TOKEN.match(name):
                self.send_error(400, "Malformed header line")
                return False
            headers.add(name, value.strip(" \t\r\n"))
        else:
            self.send_error(431, f"More than {MAX_HEADERS} header lines")
            return False
        connection = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
        self.close_connection = ("close" in connection if version == "HTTP/1.1"
                                 else "keep-alive" not in connection)
        hosts = headers.get_all("Host")
        if (version == "HTTP/1.1" and len(hosts) != 1) or len(hosts) > 1 or \
                (hosts and not _HOST.match(hosts[0])):
            self.send_error(400, "HTTP/1.1 needs exactly one valid Host header")
            return False
        return True

    def _serve(self):
        started = time.perf_counter()
        app = self.server.app
        client = self.client_address[0]
        try:
            self._length = self._body_length()
        except ApiError as e:
            self.close_connection = True
            response = Response(e.status, error_body(e.message, e.field), e.headers)
        else:
            self.server.set_state(self.connection, "busy")
            response = app.dispatch(self.command, self.path, self.headers, self._read_body,
                                    client)
            if self._length:                    # refused before its body was read: the
                self.close_connection = True    # body is still on the wire
        if self.server.stopping:
            self.close_connection = True        # the last answer on this connection
        data = render_response(response.status, response.body, response.headers,
                               self.close_connection, response.content_type)
        if self.command == "HEAD":
            data = data[:data.index(b"\r\n\r\n") + 4]
        self.server.set_state(self.connection, "writing")
        self.wfile.write(data)
        self.server.set_state(self.connection, "idle")
        seconds = time.perf_counter() - started
        app.record_request(self.command, response.route, response.status, seconds)
        level = "debug" if response.route in PROBE_ROUTES else "info"   # kubelet polls these
        if app.log.wants(level):
            app.log(level, "request", method=self.command, path=response.route or "unmatched",
                    status=response.status, zone=response.zone, client=client,
                    identity=response.identity, duration_ms=round(seconds * 1000, 3))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _body_length(self):
        """The body's length from the headers alone, None without one; nothing is read.
        400/413/501 for framing bindcar refuses, before authentication."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise ApiError(501, "Transfer-Encoding is not supported; send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            raise ApiError(400, "More than one Content-Length header")
        if not lengths:
            return None                         # req.json() answers 411 where a body is needed
        text = lengths[0].strip()
        if not text.isdigit() or not text.isascii():
            raise ApiError(400, "Content-Length must be a non-negative integer")
        text = text.lstrip("0") or "0"         # int() refuses over 4,300 digits
        if len(text) > 15:
            raise ApiError(400, "Content-Length is not a length any body could have")
        if int(text) > self.server.max_body:
            raise ApiError(413, f"Body is larger than {self.server.max_body} bytes")
        return int(text)

    def _read_body(self):
        """The body, read when ``dispatch`` asks for it: once the caller has passed
        authentication, so that a stranger's body is never read."""
        length = self._length
        self._length = None                     # read once; after this, nothing unread
        if length is None:
            return None
        self.server.set_state(self.connection, "body")
        try:
            if self.headers.get("Expect", "").lower() == "100-continue" and length:
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # invited only if it fits
            body = self.rfile.read(length)
            if len(body) != length:
                self.close_connection = True
                raise ApiError(400, "Body ended before Content-Length bytes")
            return body
        finally:
            self.server.set_state(self.connection, "busy")

    def send_error(self, code, message=None, explain=None):
        """Protocol errors from the standard library, as JSON like every other error."""
        self.close_connection = True
        phrase = STATUS_PHRASES.get(code, "Error")
        try:
            self.wfile.write(render_response(code, error_body(message or phrase), close=True))
        except OSError:
            pass
        self.server.set_state(self.connection, "idle")
        app = self.server.app
        app.record_request(getattr(self, "command", None), None, code, 0.0)
        app.log("info", "request", method=getattr(self, "command", None), path="unmatched",
                status=code, client=self.client_address[0])

    def log_message(self, format, *args):
        pass                                    # every request is logged once, as JSON


class Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with caps on connections (in all, and per client address)
    and a stop that loses no request.

    Each connection is known as idle (waiting for a request line), reading (its
    headers), body (reading its body), busy (being answered) or writing, and
    since when. ``reap`` closes one reading for HEAD_TIMEOUT, and one idle,
    in its body or writing for SOCKET_TIMEOUT. To stop, idle, reading and body
    ones are closed at once and busy ones answer their request, then close; a
    request whose line arrives after the stop began is not run.
    """

    daemon_threads = True
    request_queue_size = 128
    max_body = MAX_BODY                 # bytes; a larger body is refused with 413 unread

    def __init__(self, address, app, inherited=None):
        if inherited is not None:                      # systemd socket activation
            self.address_family = inherited.family
        elif ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.connections, self.conn_lock = {}, threading.Condition()
        self.per_client = {}                           # client address -> connections held
        self.stopping = False
        self.last_loop = time.monotonic()
        super().__init__(address, Handler, bind_and_activate=inherited is None)
        if inherited is not None:
            self.socket.close()
            self.socket = inherited
            self.server_address = inherited.getsockname()

    def service_actions(self):
        self.last_loop = time.monotonic()              # the watchdog's sign of life

    # -- connection states, for the stop

    def set_state(self, sock, state):
        """Mark a connection's state from now; False when it has been closed under it."""
        with self.conn_lock:
            current = self.connections.get(sock)
            if current is not None and current[0] == "closed":
                return False
            self.connections[sock] = (state, time.monotonic())
            return True

    def _close(self, sock):
        """Under conn_lock: shut a connection down; its blocked recv or send returns."""
        self.connections[sock] = ("closed", time.monotonic())
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    LIMITS = {"idle": SOCKET_TIMEOUT, "reading": HEAD_TIMEOUT, "body": SOCKET_TIMEOUT,
              "writing": SOCKET_TIMEOUT}        # seconds in a state before ``reap`` closes

    def reap(self, stopped):
        """Close connections past their state's limit, once a second until ``stopped``."""
        while not stopped.wait(REAP_INTERVAL):
            now = time.monotonic()
            with self.conn_lock:
                for sock, (state, since) in list(self.connections.items()):
                    if now - since > self.LIMITS.get(state, math.inf):
                        self._close(sock)

    def forget(self, sock):
        with self.conn_lock:
            self.connections.pop(sock, None)
            self.conn_lock.notify_all()

    def drain(self, timeout):
        """Close idle connections; wait up to ``timeout`` for the rest. Return those left."""
        with self.conn_lock:
            self.stopping = True
            for sock, (state, _) in list(self.connections.items()):
                if state in ("idle", "reading", "body"):    # no work has begun on these
                    self._close(sock)
            self.conn_lock.wait_for(lambda: not self.connections, timeout)
            return len(self.connections)

    # -- admission: a cap per client address, and room made by the longest waiting

    def process_request(self, request, client_address):
        """Admit a new connection, or answer 503 and close it.

        One address may hold ``max_per_client`` connections.  When all
        MAX_CONNECTIONS are taken, the one idle longest (a keep-alive
        connection between requests), else the one longest in its headers, is
        closed to make room: whoever holds the slots, from however many
        addresses, cannot lock everyone else out.
        """
        client = client_address[0]
        with self.conn_lock:
            held = self.per_client.get(client, 0)
            if held >= self.app.config.max_per_client:
                return self._refuse(request, CLIENT_OVERLOADED)
            self.per_client[client] = held + 1
        if not self._slots.acquire(blocking=False) and not (
                self._evict_idlest() and self._slots.acquire(timeout=EVICT_WAIT)):
            self._release_client(client)
            return self._refuse(request, OVERLOADED)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            self._release_client(client)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
            self._release_client(client_address[0])

    def _refuse(self, request, answer):
        try:
            request.sendall(answer)
        except OSError:
            pass
        self.shutdown_request(request)

    def _release_client(self, client):
        with self.conn_lock:
            held = self.per_client.pop(client, 1) - 1
            if held:
                self.per_client[client] = held

    def _evict_idlest(self):
        """Close the connection idle longest, else the one longest in its headers (a
        slow sender holds a slot for nothing); True when one was closed."""
        with self.conn_lock:
            waiting = [(state != "idle", since, id(sock), sock)
                       for sock, (state, since) in self.connections.items()
                       if state in ("idle", "reading")]
            if not waiting:
                return False
            self._close(min(waiting)[3])
        self.app.log("debug", "closed the longest waiting connection to make room")
        return True

    def handle_error(self, request, client_address):
        """A connection that failed (reset, timed out): one log line, no traceback."""
        error = sys.exc_info()[1]
        level = "debug" if isinstance(error, (ConnectionError, TimeoutError)) else "error"
        self.app.log(level, "connection failed", client=client_address[0], error=repr(error),
                     traceback=_traceback() if level == "error" else None)


# ---------------------------------------------------------------- start-up

def lock_zone_dir(directory):
    """One bindcar per zone directory: an exclusive flock on a file there."""
    path = os.path.join(directory, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise ConfigError(f"BIND_ZONE_DIR: cannot open the lock file {path}: "
                          f"{e.strerror or e}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:   # a hard link to a zone file
        os.close(fd)                                           # must not be truncated
        raise ConfigError(f"BIND_ZONE_DIR: the lock file {path} is not a plain file of its "
                          "own (a hard link, a FIFO?); remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"another bindcar (PID {holder}) is using {directory}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_bound_address(config, bound):
    """The mode's rules for the address bindcar really listens on (with socket
    activation, systemd's, not BIND_API_ADDRESS).  Returns the Host check against
    DNS rebinding, for auth disabled or format-only: "loopback" (only localhost and
    loopback addresses) when listening on loopback, else "literal" (also any address
    literal, and BIND_API_HOSTNAMES); None with real authentication."""
    loopback = _is_loopback(bound)
    if config.auth_mode == "format-only" and not loopback and not config.allow_insecure:
        raise ConfigError(
            f"no authentication configured while listening on {bound} (the socket bindcar "
            "was given): set BIND_API_TOKEN or BIND_API_TOKEN_FILE to a shared secret, or "
            "listen on loopback; BINDCAR_ALLOW_INSECURE_AUTH=true accepts any Bearer token "
            "and is unsafe off loopback")
    if config.auth_mode not in ("disabled", "format-only"):
        return None
    return "loopback" if loopback else "literal"


def listen_webhook(config, webhook):
    """The webhook's own listener, on loopback (WEBHOOK_ADDRESS)."""
    try:
        server = Server(config.webhook, webhook)
    except OSError as e:
        raise ConfigError(f"WEBHOOK_ADDRESS: cannot listen on {_server_text(config.webhook)}: "
                          f"{e.strerror or e}") from None
    server.max_body = WEBHOOK_MAX_BODY
    return server


def check_zone_dir(directory):
    if not os.path.exists(directory):
        raise ConfigError(f"BIND_ZONE_DIR: {directory} does not exist; create it, writable "
                          "by the user bindcar runs as (named's user)")
    if not os.path.isdir(directory):
        raise ConfigError(f"BIND_ZONE_DIR: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"BIND_ZONE_DIR: {directory} is not writable by this user")


class Notifier:
    """systemd's notify protocol: a datagram to $NOTIFY_SOCKET; silent without it."""

    def __init__(self, environ):
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None

    def __call__(self, *fields):
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall("\n".join(fields).encode())
        except OSError:
            pass                    # systemd gone: nothing to tell


def inherited_socket(environ):
    """The listening socket systemd passed (LISTEN_FDS=1, fd 3), or None."""
    if environ.get("LISTEN_FDS") != "1":
        return None
    if environ.get("LISTEN_PID", str(os.getpid())) != str(os.getpid()):
        return None
    sock = socket.socket(fileno=3)
    if sock.type != socket.SOCK_STREAM:
        raise ConfigError("LISTEN_FDS: the socket systemd passed is not a stream socket")
    return sock


def status_line(app, server):
    host, port = server.server_address[:2]
    return (f"STATUS=Serving {host}:{port}; {len(app.managed.zones)} zones; "
            f"auth {app.config.auth_mode}; named {app.named.state}")


def check_at_start(app, stopped):
    """Once named answers: the zones listed from their files checked against it, then
    the catalog made or checked, and its members repaired; from then on, whatever a
    change named left unknown is settled when it answers again."""
    if app.config.secondaries:
        app.roster.resolve()
        threading.Thread(target=app.secondaries.follow, args=(stopped,), daemon=True).start()
    app.managed.check_all(stopped)
    app.catalog.keep(stopped)
    keep_settled(app, stopped)


def keep_settled(app, stopped):
    """Every SETTLE_INTERVAL: once named answers, settle what it left unknown.  On each
    new control connection (named may have restarted) the zones deleted lately are
    checked again: a named killed just after a delzone has the zone back.  A failure is
    logged when it differs from the last one."""
    connections, last = app.named.rndc.connections, None
    while not stopped.wait(SETTLE_INTERVAL):
        try:
            if app.named.rndc.connections != connections:
                connections = app.named.rndc.connections
                with app.named.lock:
                    app.managed.unsettled.update(app.managed.deleted_lately())
            lost = app.catalog.problem and app.catalog.lost
            pending = app.managed.unsettled or (app.catalog.unsure and not app.catalog.problem)
            if not (pending or lost or app.alignment.due()) or not app.named.answers():
                continue
            if pending:
                with app.named.lock:
                    app.settler.settle_all()
            if lost:                            # named lost the catalog: made again
                with app.named.lock:
                    app.catalog.start()
            if app.alignment.due():
                app.alignment.align(stopped)
            last = None
        except ApiError as e:
            if e.status != 503 and e.message != last:
                app.log("error", "cannot settle a change named left unknown; tried again "
                        "every 0.5 s", error=e.message)
            last = e.message
        except Exception:
            if last != "traceback":
                app.log("error", "cannot settle a change named left unknown",
                        traceback=_traceback())
            last = "traceback"


def keep_systemd_informed(notify, app, server, stopped):
    """STATUS= every few seconds and WATCHDOG=1 while the accept loop turns."""
    interval = min(notify.watchdog / 2, 10.0) if notify.watchdog else 10.0
    while not stopped.wait(interval):
        fields = [status_line(app, server)]
        if notify.watchdog and time.monotonic() - server.last_loop < notify.watchdog / 2:
            fields.append("WATCHDOG=1")
        notify(*fields)


def release_compiler_memory():
    """Give back the heap that compiling this file and its modules freed (~2-4 MB),
    when any of them was compiled at this start (``python3 bindcar.py`` always is).

    glibc keeps freed memory for reuse; ``malloc_trim`` returns it. Elsewhere
    (musl) there is no such call and nothing to do.  Run from compiled modules
    (``-m bindcar`` after compileall, as the unit and the image do) there is
    nothing to give back, and ctypes would cost more than it returns.
    """
    if not any(_compiled_now(m) for m in (sys.modules["__main__"], zonefile, rndc_proto,
                                          dns_proto)):
        return
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _compiled_now(module):
    """Was ``module`` compiled from source at this start: run as a script, or its
    cached bytecode missing, stale, or written since the process started?"""
    try:
        cached = os.stat(module.__cached__).st_mtime
        return cached >= PROCESS_START - 1 or os.stat(module.__file__).st_mtime > cached
    except (AttributeError, TypeError, OSError):
        return True


def healthcheck(environ):
    """``--healthcheck``: GET /health on this host's API port; 0 when healthy."""
    address = environ.get("BIND_API_ADDRESS", "0.0.0.0")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{environ.get('API_PORT', '8080')}/health"
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as reply:
            return 0 if reply.status == 200 else 1
    except (OSError, http.client.HTTPException, ValueError):
        return 1


def main(argv=None, environ=None):
    """Parse the arguments; start (``open_all``), say so (``announce``), serve until a
    signal, then stop without cutting a change in half (``serve``)."""
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv and argv[0] == "--healthcheck":
        return healthcheck(environ)
    if argv:
        print(f"bindcar: unknown argument {argv[0]!r}; see --help", file=sys.stderr)
        return 2
    notify = Notifier(environ)
    log = Log()                         # before the config: reading it may warn (a key file)
    try:
        config, app, servers, lock_fd = open_all(environ, log)
    except ConfigError as e:
        print(f"bindcar: {e}", file=sys.stderr)
        notify(f"STATUS=Failed: {e}")
        return 2
    announce(log, config, app, servers, environ)
    release_compiler_memory()
    notify("READY=1", status_line(app, servers[0]), f"MAINPID={os.getpid()}")
    serve(log, notify, app, servers)
    if lock_fd is not None:
        os.close(lock_fd)
    return 0


def open_all(environ, log):
    """The configuration, the zone directory locked and read, the app, and its
    listeners (the API's first, then the webhook's); ConfigError says what stops it."""
    config = load_config(environ, warn=lambda text: log("warn", text))
    log.set_level(config.log_level)
    lock_fd = None
    if config.zone_dir:
        check_zone_dir(config.zone_dir)
        lock_fd = lock_zone_dir(config.zone_dir)
    app = App(config, log)
    try:
        if config.zone_dir:
            app.managed.scan()
    except OSError as e:
        raise ConfigError(f"BIND_ZONE_DIR: cannot read {config.zone_dir}: "
                          f"{e.strerror or e}") from None
    try:
        server = Server((config.address, config.port), app, inherited_socket(environ))
    except OSError as e:
        raise ConfigError(f"cannot listen on {config.address}:{config.port}: "
                          f"{e.strerror or e}") from None
    app.gate.guard_host = check_bound_address(config, server.server_address[0])
    servers = [server] + ([listen_webhook(config, app.webhook)] if config.webhook else [])
    return config, app, servers, lock_fd


def announce(log, config, app, servers, environ):
    """The start's log lines: the configuration (no secret), its warnings, where it
    listens."""
    log("info", "starting", version=VERSION, **config.describe())
    for warning in config.warnings:
        log("warn", warning)
    if config.auth_mode == "disabled":
        log("warn", "authentication is DISABLED (DISABLE_AUTH=true): anyone who reaches "
            "this port can change every zone")
    elif config.auth_mode == "format-only":
        log("warn", "format-only authentication: any well-formed Bearer token is accepted")
    host, port = servers[0].server_address[:2]
    log("info", "listening", address=host, port=port, zones=len(app.managed.zones),
        socket_activated=environ.get("LISTEN_FDS") == "1" or None)
    for webhook in servers[1:]:
        host, port = webhook.server_address[:2]
        log("info", "listening for external-dns (webhook provider)", address=host, port=port,
            zones=list(config.webhook_zones or ()) or "the managed primary zones")


def serve(log, notify, app, servers):
    """The background threads, then the API's accept loop until SIGTERM or SIGINT;
    then no new connections, requests in flight answered, named's connections closed
    under the lock."""
    server, others = servers[0], servers[1:]
    stopped = threading.Event()
    threading.Thread(target=keep_systemd_informed, args=(notify, app, server, stopped),
                     daemon=True).start()
    threading.Thread(target=check_at_start, args=(app, stopped), daemon=True).start()
    for each in servers:
        threading.Thread(target=each.reap, args=(stopped,), daemon=True).start()
    for each in others:
        threading.Thread(target=each.serve_forever, args=(SHUTDOWN_POLL,),
                         daemon=True).start()

    def stop(signum, frame):
        log("info", "stopping", signal=signal.Signals(signum).name)
        notify("STOPPING=1", "STATUS=Stopping: finishing requests in flight")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A parent may have left them blocked (the mask is inherited): then no stop would come.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        server.serve_forever(poll_interval=SHUTDOWN_POLL)
    finally:
        stopped.set()
        for each in others:
            each.shutdown()
        for each in servers:
            each.socket.close()                 # no new connections
        left = sum(each.drain(STOP_TIMEOUT) for each in servers)   # in flight: answered
        with app.named.lock:                    # no change to named is ever cut in half
            app.named.close()
        log("info" if not left else "warn", "stopped", unfinished_connections=left or None)


if __name__ == "__main__":
    sys.exit(main())
