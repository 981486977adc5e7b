"""bindcar: an HTTP API that manages BIND9 zones through named's control channel.

    $ BIND_API_TOKEN_FILE=/etc/bindcar/token python3 bindcar.py
    $ curl -H "Authorization: Bearer $(cat /etc/bindcar/token)" localhost:8080/api/v1/zones

Configuration comes from the environment (``python3 bindcar.py --help``).
One process, one ``ThreadingHTTPServer``, one kept-open RNDC connection,
and one lock that serialises every change to named or the zone directory.
Routing is a plain function, ``App.dispatch(method, target, headers,
body)``; the request handler only reads within limits and writes each
response in one ``sendall``.  Text for named and zone files is made in
``zonefile``; the wire to named is ``rndc_proto``.
"""

import errno
import fcntl
import hmac
import http.server
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse

import rndc_proto
import zonefile

VERSION = "0.1.0"

MAX_BODY = 1 << 20              # bytes; a larger body is refused with 413 unread
SOCKET_TIMEOUT = 30.0           # seconds a client may stay silent mid-request or idle
MAX_CONNECTIONS = 256           # concurrent connections; past it, 503 at once
READY_CACHE = 1.0               # seconds a /ready result is reused
SHUTDOWN_POLL = 0.1             # seconds between checks for a stop request
LOCK_FILE = ".bindcar.lock"
RNDC_CONF_PATHS = ("/etc/bind/rndc.conf", "/etc/rndc.conf", "/etc/bind/rndc.key")

LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40}
PROBE_ROUTES = ("/health", "/api/v1/health", "/ready", "/api/v1/ready")


# ---------------------------------------------------------------- logging

class Log:
    """One JSON object per line on stderr; nothing secret is ever passed in."""

    def __init__(self, level="info", stream=None):
        self.level = LEVELS[level]
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def __call__(self, level, message, **fields):
        if LEVELS[level] < self.level:
            return
        now = time.time()
        record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                  + f".{int(now * 1000) % 1000:03d}Z", "level": level, "message": message}
        record.update((k, v) for k, v in fields.items() if v is not None)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


class _ToLog(logging.Handler):
    """Carries rndc_proto's warnings (a world-readable key file) into the JSON log."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def emit(self, record):
        self.log("warn" if record.levelno >= logging.WARNING else "info", record.getMessage())


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


def _port(text):
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError("must be a port number, 1-65535")
    return port


def _seconds(text):
    value = float(text)
    if not 0 < value <= 600:
        raise ValueError("must be a number of seconds, above 0 and at most 600")
    return value


def _level(text):
    level = text.strip().lower().split(",")[0].split("=")[-1]     # RUST_LOG "bindcar=debug"
    level = {"trace": "debug"}.get(level, level)
    if level not in LEVELS:
        raise ValueError("must be debug, info, warn or error")
    return level


def _server(text):
    """``host:port``, ``[v6]:port`` or a bare host (port 953)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("needs a host, as host:port")
    return host, _port(port) if port else rndc_proto.DEFAULT_PORT


def _text(text):
    return text


# (variable, default, parser, help): the whole of bindcar's configuration.
SETTINGS = (
    ("API_PORT", "8080", _port, "TCP port of the HTTP API"),
    ("BIND_API_ADDRESS", "0.0.0.0", _text, "address to listen on (IPv4 or IPv6)"),
    ("BIND_ZONE_DIR", "/var/cache/bind", os.path.abspath,
     "directory of the zone files bindcar writes; must exist and be writable"),
    ("RNDC_SERVER", "127.0.0.1:953", _server,
     "named's control channel, host:port or [v6]:port (else from RNDC_CONF)"),
    ("RNDC_ALGORITHM", "sha256", rndc_proto.normalize_algorithm,
     "HMAC algorithm of the RNDC key, with or without hmac- (else from RNDC_CONF)"),
    ("RNDC_SECRET", None, _text, "base64 secret of the RNDC key (else RNDC_SECRET_FILE)"),
    ("RNDC_SECRET_FILE", None, _text, "file holding the base64 RNDC secret"),
    ("RNDC_CONF", None, _text,
     "rndc.conf or rndc.key for what the three above leave unset; default: the first of "
     + ", ".join(RNDC_CONF_PATHS) + " that exists"),
    ("RNDC_TIMEOUT", "10", _seconds, "seconds to wait for named's answer"),
    ("DISABLE_AUTH", "false", _bool, "true: no authentication at all (a warning is logged)"),
    ("BIND_API_TOKEN", None, _text, "shared secret clients send as 'Authorization: Bearer'"),
    ("BIND_API_TOKEN_FILE", None, _text, "file holding the shared secret"),
    ("BINDCAR_ALLOW_INSECURE_AUTH", "false", _bool,
     "true: allow format-only auth (any Bearer token) on a non-loopback address"),
    ("LOG_LEVEL", "info", _level, "debug, info, warn or error (RUST_LOG is honoured too)"),
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
                "rndc_key_source": self.rndc_source, "auth": self.auth_mode,
                "api_token": "***" if self.api_token else None,
                "rndc_timeout": self.rndc_timeout, "log_level": self.log_level}


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


def load_config(environ):
    """Parse ``environ`` into a Config; ConfigError names the variable at fault."""
    values = {}
    for name, default, parse, _ in SETTINGS:
        raw = environ.get(name)
        if name == "LOG_LEVEL" and raw is None:
            raw = environ.get("RUST_LOG")
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
    config.rndc_timeout = values["RNDC_TIMEOUT"]
    _load_rndc(config, environ, values)
    _load_auth(config, values)
    return config


def _load_rndc(config, environ, values):
    """RNDC settings: the variables first, then RNDC_CONF for the rest."""
    secret, source = environ.get("RNDC_SECRET"), "RNDC_SECRET"
    if not secret and values["RNDC_SECRET_FILE"]:
        secret = _read_secret_file(values["RNDC_SECRET_FILE"], "RNDC_SECRET_FILE")
        source = "RNDC_SECRET_FILE"
    conf = None
    if values["RNDC_CONF"] or not secret:
        path = values["RNDC_CONF"] or next((p for p in RNDC_CONF_PATHS if os.path.exists(p)),
                                           None)
        if path is None:
            raise ConfigError("no RNDC key: set RNDC_SECRET (or RNDC_SECRET_FILE), or "
                              "RNDC_CONF to an rndc.conf or rndc.key")
        try:
            conf = rndc_proto.load_config(path)
        except rndc_proto.RndcConfigError as e:
            raise ConfigError(f"RNDC_CONF: {e}") from None
    key_from_conf = not secret
    if key_from_conf:
        secret, source = conf.secret, f"{path} key {conf.key_name}"
    # The algorithm belongs to the key: from the conf only when the key is.
    if key_from_conf and "RNDC_ALGORITHM" not in environ:
        config.rndc_algorithm = conf.algorithm
    else:
        config.rndc_algorithm = values["RNDC_ALGORITHM"]
    if "RNDC_SERVER" in environ or conf is None:
        config.rndc_host, config.rndc_port = values["RNDC_SERVER"]
    else:
        config.rndc_host, config.rndc_port = conf.host, conf.port
    try:
        rndc_proto.RndcClient(config.rndc_host, config.rndc_port, config.rndc_algorithm, secret)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    config.rndc_secret, config.rndc_source = secret, source


def _is_loopback(address):
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _load_auth(config, values):
    token = values["BIND_API_TOKEN"]
    if not token and values["BIND_API_TOKEN_FILE"]:
        token = _read_secret_file(values["BIND_API_TOKEN_FILE"], "BIND_API_TOKEN_FILE")
    config.api_token = token or None
    if values["DISABLE_AUTH"]:
        config.auth_mode = "disabled"
    elif token:
        config.auth_mode = "token"
    elif _is_loopback(config.address) or values["BINDCAR_ALLOW_INSECURE_AUTH"]:
        config.auth_mode = "format-only"
    else:
        raise ConfigError(
            f"no authentication configured while listening on {config.address}: set "
            "BIND_API_TOKEN or BIND_API_TOKEN_FILE to a shared secret (or DISABLE_AUTH=true "
            "behind another guard); BINDCAR_ALLOW_INSECURE_AUTH=true accepts any Bearer "
            "token and is unsafe off loopback")


def usage():
    lines = ["usage: python3 bindcar.py [--help]", "",
             "bindcar serves an HTTP API that manages BIND9 zones over RNDC.",
             "Configuration, from the environment (default in brackets):", ""]
    for name, default, _, help_text in SETTINGS:
        lines.append(f"  {name:<30} {help_text}" + (f" [{default}]" if default else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- errors and responses

class ApiError(Exception):
    """Raised anywhere in a handler; becomes the JSON error body in one place."""

    def __init__(self, status, message, field=None, details=None, headers=()):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.details, self.headers = details, tuple(headers)


class Response:
    __slots__ = ("status", "body", "headers", "route", "zone")

    def __init__(self, status, body, headers=(), route=None, zone=None):
        self.status, self.body, self.headers = status, body, headers
        self.route, self.zone = route, zone


def json_body(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def error_body(message, field=None, details=None):
    body = {"error": message, "details": details}
    if field:
        body["field"] = field
    return json_body(body)


INTERNAL_ERROR = error_body("Internal server error")


def _zone_response(message, details=None):
    body = {"success": True, "message": message}
    if details:
        body["details"] = details
    return json_body(body)


# ---------------------------------------------------------------- the application

class App:
    """Zones over RNDC.  ``dispatch`` is the whole request path; no sockets here."""

    # (method, path template, handler name, needs auth)
    ROUTES = (
        ("GET", "/health", "health", False),
        ("GET", "/api/v1/health", "health", False),
        ("GET", "/ready", "ready", False),
        ("GET", "/api/v1/ready", "ready", False),
        ("GET", "/api/v1/server/status", "server_status", True),
        ("POST", "/api/v1/server/reload", "server_reload", True),
        ("POST", "/api/v1/zones", "create_zone", True),
        ("GET", "/api/v1/zones", "list_zones", True),
        ("GET", "/api/v1/zones/{name}", "get_zone", True),
        ("PATCH", "/api/v1/zones/{name}", "modify_zone", True),
        ("DELETE", "/api/v1/zones/{name}", "delete_zone", True),
        ("POST", "/api/v1/zones/{name}/reload", "reload_zone", True),
        ("GET", "/api/v1/zones/{name}/status", "zone_status", True),
        ("POST", "/api/v1/zones/{name}/freeze", "freeze_zone", True),
        ("POST", "/api/v1/zones/{name}/thaw", "thaw_zone", True),
        ("POST", "/api/v1/zones/{name}/notify", "notify_zone", True),
        ("POST", "/api/v1/zones/{name}/retransfer", "retransfer_zone", True),
    )

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.rndc = rndc_proto.RndcClient(config.rndc_host, config.rndc_port,
                                          config.rndc_algorithm, config.rndc_secret,
                                          config.rndc_timeout)
        self.lock = threading.Lock()          # every change to named or the zone directory
        self.zones = set()                    # the zones bindcar manages
        self._ready = (0.0, None)
        self._routes = {}                     # template segments -> {method: (handler, auth)}
        for method, template, handler, auth in self.ROUTES:
            key = tuple(template.strip("/").split("/"))
            self._routes.setdefault(key, {})[method] = (getattr(self, handler), auth)

    # -- start-up

    def scan_zone_dir(self):
        """Know the zones whose files are in the directory; clear a crash's temp files."""
        for name in zonefile.remove_stale_temp_files(self.config.zone_dir):
            self.log("warn", "removed a temporary file left by an earlier crash", file=name)
        for name in os.listdir(self.config.zone_dir):
            if name.endswith(zonefile.ZONE_SUFFIX) and not name.startswith("."):
                try:
                    self.zones.add(zonefile.parse_zone_name(name[:-len(zonefile.ZONE_SUFFIX)]))
                except zonefile.ZoneError:
                    pass

    # -- routing

    def route(self, method, path):
        """(handler, needs auth, template, path parameter) or ApiError 404/405."""
        segments = tuple(path.strip("/").split("/")) if path != "/" else ("",)
        if path.endswith("/") and path != "/":
            raise ApiError(404, "Not found")
        for key, methods in self._routes.items():
            if len(key) != len(segments):
                continue
            param = None
            for want, got in zip(key, segments):
                if want == "{name}":
                    param = urllib.parse.unquote(got)
                elif want != got:
                    break
            else:
                template = "/" + "/".join(key)
                if method not in methods:
                    allow = ", ".join(sorted(methods))
                    error = ApiError(405, f"Method {method} not allowed on {template}",
                                     headers=[("Allow", allow)])
                    error.template = template
                    raise error
                handler, auth = methods[method]
                return handler, auth, template, param
        raise ApiError(404, "Not found")

    def dispatch(self, method, target, headers, body):
        """One request in, one Response out; never raises."""
        path = target.split("?", 1)[0]
        template = None
        zone = None
        try:
            handler, auth, template, param = self.route(method, path)
            if auth:
                self.authenticate(headers)
            if param is not None:
                zone = self.zone_name(param)
                return self._finish(handler(zone, headers, body), template, zone)
            return self._finish(handler(headers, body), template, zone)
        except ApiError as e:
            return Response(e.status, error_body(e.message, e.field, e.details),
                            e.headers, template or getattr(e, "template", None), zone)
        except Exception:
            self.log("error", "unexpected error", method=method, path=template, zone=zone,
                     traceback=traceback.format_exc())
            return Response(500, INTERNAL_ERROR, (), template, zone)

    @staticmethod
    def _finish(result, template, zone):
        status, body = result[0], result[1]
        headers = result[2] if len(result) > 2 else ()
        return Response(status, body, headers, template, zone)

    # -- input

    def authenticate(self, headers):
        mode = self.config.auth_mode
        if mode == "disabled":
            return
        value = headers.get("Authorization")
        if value is None:
            raise ApiError(401, "Missing Authorization header")
        if not value.startswith("Bearer "):
            raise ApiError(401, "Invalid Authorization header format. Expected: Bearer <token>")
        token = value[7:].strip()
        if not token:
            raise ApiError(401, "Empty token")
        if mode == "token" and not hmac.compare_digest(
                token.encode("utf-8", "surrogateescape"), self.config.api_token.encode()):
            raise ApiError(401, "Unauthorized")

    @staticmethod
    def zone_name(text):
        try:
            return zonefile.parse_zone_name(text, "name")
        except zonefile.ZoneError as e:
            raise ApiError(400, f"Invalid zone name: {e.message}", "name") from None

    @staticmethod
    def read_json(headers, body):
        if body is None:
            raise ApiError(411, "A body needs a Content-Length header")
        ctype = headers.get("Content-Type", "")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            raise ApiError(415, "Content-Type must be application/json")
        try:
            return json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"Malformed JSON: {e}", "body") from None

    # -- talking to named

    def call_named(self, command, zone=None):
        """Run an RNDC command; transport failures become 503."""
        try:
            return self.rndc.call(command)
        except rndc_proto.RndcConnectionError as e:
            self.log("error", "rndc failed", command=command.split(" ", 1)[0], zone=zone,
                     error=str(e))
            raise ApiError(503, "named is not reachable over RNDC", details=str(e)) from None

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
        if action:
            return ApiError(status, f"named refused to {action} zone {zone}: {error.err}",
                            details=error.text or None)
        return ApiError(500, "Internal server error")

    def zone_command(self, command, zone, action):
        try:
            return self.call_named(command, zone)
        except rndc_proto.RndcCommandError as e:
            raise self.rndc_error(e, zone, action) from None

    def shown_zone(self, zone):
        """named's configuration of ``zone`` as statements; 404 if named lacks it."""
        text = self.zone_command(f"showzone {zone}", zone, None)
        return zonefile.parse_shown_zone(text)

    def require_managed(self, zone, statements):
        """Change only zones whose file is bindcar's own, never named.conf's zones."""
        path = zonefile.zone_file_path(self.config.zone_dir, zone)
        if zonefile.shown_option(statements, "file") != path:
            raise ApiError(409, f"Zone {zone} is not managed by bindcar (its file is not "
                           f"{zone}{zonefile.ZONE_SUFFIX} in bindcar's zone directory)")
        return path

    # -- open endpoints

    def health(self, headers, body):
        return 200, json_body({"status": "healthy"})

    def ready(self, headers, body):
        when, result = self._ready
        if result is None or time.monotonic() - when > READY_CACHE:
            result = self._check_ready()
            self._ready = (time.monotonic(), result)
        return (200 if result["ready"] else 503), json_body(result)

    def _check_ready(self):
        checks, ready = [], True
        if os.access(self.config.zone_dir, os.W_OK | os.X_OK):
            checks.append("zone directory: writable")
        else:
            checks.append("zone directory: not writable")
            ready = False
        try:
            self.rndc.call("null")
            checks.append("rndc: named answers")
        except rndc_proto.RndcError as e:
            checks.append(f"rndc: {e}")
            ready = False
        if self.config.auth_mode == "disabled":
            checks.append("auth: DISABLED (DISABLE_AUTH=true)")
        return {"ready": ready, "checks": checks}

    # -- server

    def server_status(self, headers, body):
        return 200, json_body({"status": self.zone_command("status", None, None)})

    def server_reload(self, headers, body):
        with self.lock:
            text = self.zone_command("reload", None, "reload")
        return 200, _zone_response("Server reloaded successfully", text)

    # -- zones

    def create_zone(self, headers, body):
        try:
            zone = zonefile.parse_zone(self.read_json(headers, body))
            path = zonefile.zone_file_path(self.config.zone_dir, zone.name)
            clause = zonefile.render_zone_clause(zone, path)
            text = zonefile.render_zone_file(zone) if zone.type == "primary" else None
        except zonefile.ZoneError as e:
            raise ApiError(400, str(e), e.field) from None
        with self.lock:
            self._create_locked(zone, path, clause, text)
        self.log("info", "zone created", zone=zone.name, type=zone.type)
        return 201, _zone_response(f"Zone {zone.name} created successfully")

    def _create_locked(self, zone, path, clause, text):
        name = zone.name
        try:
            self.call_named(f"zonestatus {name}", name)
            raise ApiError(409, f"Zone {name} already exists")
        except rndc_proto.RndcCommandError as e:
            if e.err == "zone not loaded":              # a secondary not yet transferred
                raise ApiError(409, f"Zone {name} already exists") from None
            if e.err != "not found":
                raise self.rndc_error(e, name, None) from None
        if text is not None:
            self._write_new_zone_file(name, path, text)
        else:
            self._clear_leftovers(name)
        try:
            self.call_named(f"addzone {name} {clause}", name)
        except rndc_proto.RndcCommandError as e:          # e.g. an unknown dnssec-policy
            self._remove_files(name)
            raise self.rndc_error(e, name, "add", status=400) from None
        except ApiError:
            self._roll_back_addzone(name)
            raise
        self.zones.add(name)

    def _write_new_zone_file(self, name, path, text):
        """Write the zone file; named does not serve the zone, so a file there is a leftover."""
        try:
            zonefile.write_zone_file(path, text)
        except FileExistsError:
            self._clear_leftovers(name)
            zonefile.write_zone_file(path, text)
        except OSError as e:
            self.log("error", "cannot write zone file", zone=name, error=e.strerror)
            raise ApiError(500, f"Cannot write the zone file of {name}: "
                           f"{e.strerror or 'I/O error'}") from None

    def _clear_leftovers(self, name):
        """Files of a zone named does not serve (an earlier crash): they would be loaded."""
        removed = zonefile.remove_zone_files(self.config.zone_dir, name)
        if removed:
            self.log("warn", "replaced files left for a zone named does not serve",
                     zone=name, files=removed)

    def _roll_back_addzone(self, name):
        """named stopped answering mid-addzone: undo whatever it may have done, then ours."""
        try:
            self.rndc.call(f"delzone {name}")
            self.log("warn", "rolled back a zone named added before failing", zone=name)
        except rndc_proto.RndcCommandError:
            pass                                        # it never added the zone
        except rndc_proto.RndcError as e:
            self.log("error", "named may still hold a zone whose creation failed; "
                     "check it when named is back", zone=name, error=str(e))
        self._remove_files(name)

    def _remove_files(self, name):
        try:
            zonefile.remove_zone_files(self.config.zone_dir, name)
        except OSError as e:
            self.log("error", "cannot remove zone files", zone=name, error=e.strerror)

    def list_zones(self, headers, body):
        zones = sorted(self.zones.copy())        # one C call: safe while creates run
        return 200, json_body({"zones": zones, "count": len(zones)})

    def get_zone(self, zone, headers, body):
        try:
            text = self.call_named(f"zonestatus {zone}", zone)
        except rndc_proto.RndcCommandError as e:
            if e.err != "zone not loaded":
                raise self.rndc_error(e, zone, None) from None
            statements = self.shown_zone(zone)           # a secondary before its transfer
            info = {"name": zone,
                    "zoneType": _zone_type(zonefile.shown_option(statements, "type"))}
            path = zonefile.shown_option(statements, "file")
            if path:
                info["filePath"] = path
            return 200, json_body(info)
        fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        info = {"name": zone, "zoneType": _zone_type(fields.get("type"))}
        if fields.get("serial", "").isdigit():
            info["serial"] = int(fields["serial"])
        if fields.get("files"):
            info["filePath"] = fields["files"].split(", ")[0]
        return 200, json_body(info)

    def modify_zone(self, zone, headers, body):
        try:
            update = zonefile.parse_zone_update(self.read_json(headers, body))
        except zonefile.ZoneError as e:
            raise ApiError(400, str(e), e.field) from None
        with self.lock:
            statements = self.shown_zone(zone)
            self.require_managed(zone, statements)
            try:
                clause = zonefile.patch_zone_clause(statements, update)
            except zonefile.ZoneError as e:
                raise ApiError(400, str(e), e.field) from None
            self.zone_command(f"modzone {zone} {clause}", zone, "modify")
        self.log("info", "zone modified", zone=zone)
        return 200, _zone_response(f"Zone {zone} modified successfully")

    def delete_zone(self, zone, headers, body):
        with self.lock:
            self.require_managed(zone, self.shown_zone(zone))
            text = self.zone_command(f"delzone {zone}", zone, "delete")
            self.zones.discard(zone)
            try:
                removed = zonefile.remove_zone_files(self.config.zone_dir, zone)
            except OSError as e:
                self.log("error", "zone deleted from named, but its files remain",
                         zone=zone, error=e.strerror)
                raise ApiError(500, f"Zone {zone} was deleted from named, but removing its "
                               "files failed; see the log") from None
        self.log("info", "zone deleted", zone=zone, files=removed)
        return 200, _zone_response(f"Zone {zone} deleted successfully", text or None)

    def reload_zone(self, zone, headers, body):
        with self.lock:
            text = self.zone_command(f"reload {zone}", zone, "reload")
        return 200, _zone_response(f"Zone {zone} reloaded successfully", text)

    def zone_status(self, zone, headers, body):
        text = self.zone_command(f"zonestatus {zone}", zone, "read the status of")
        return 200, _zone_response(f"Zone {zone} status retrieved", text)

    def freeze_zone(self, zone, headers, body):
        with self.lock:
            text = self.zone_command(f"freeze {zone}", zone, "freeze")
        return 200, _zone_response(f"Zone {zone} frozen successfully", text)

    def thaw_zone(self, zone, headers, body):
        with self.lock:
            text = self.zone_command(f"thaw {zone}", zone, "thaw")
        return 200, _zone_response(f"Zone {zone} thawed successfully", text)

    def notify_zone(self, zone, headers, body):
        text = self.zone_command(f"notify {zone}", zone, "notify")
        return 200, _zone_response(f"Notify sent for zone {zone}", text)

    def retransfer_zone(self, zone, headers, body):
        with self.lock:
            text = self.zone_command(f"retransfer {zone}", zone, "retransfer")
        return 200, _zone_response(f"Retransfer initiated for zone {zone}", text)


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _zone_type(text):
    return zonefile.ZONE_TYPES.get(text or "", text or "unknown")


# ---------------------------------------------------------------- HTTP

STATUS_PHRASES = {s.value: s.phrase for s in http.HTTPStatus}


def render_response(status, body, headers=(), close=False, content_type="application/json"):
    """Status line, headers and body as one bytes object: one sendall, no Nagle stall."""
    head = [f"HTTP/1.1 {status} {STATUS_PHRASES.get(status, 'Unknown')}",
            f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


OVERLOADED = render_response(503, error_body("Too many connections"), close=True)


class Handler(http.server.BaseHTTPRequestHandler):
    """Reads one request within the limits, hands it to ``App.dispatch``, writes once."""

    protocol_version = "HTTP/1.1"
    server_version = f"bindcar/{VERSION}"
    timeout = SOCKET_TIMEOUT

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self):
        started = time.perf_counter()
        app = self.server.app
        try:
            body = self._read_body()
        except ApiError as e:
            self.close_connection = True
            response = Response(e.status, error_body(e.message, e.field), e.headers)
        else:
            response = app.dispatch(self.command, self.path, self.headers, body)
        data = render_response(response.status, response.body, response.headers,
                               self.close_connection)
        if self.command == "HEAD":
            data = data[:data.index(b"\r\n\r\n") + 4]
        self.wfile.write(data)
        level = "debug" if response.route in PROBE_ROUTES else "info"   # kubelet polls these
        app.log(level, "request", method=self.command, path=response.route or "unmatched",
                status=response.status, zone=response.zone, client=self.client_address[0],
                duration_ms=round((time.perf_counter() - started) * 1000, 3))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _read_body(self):
        """The body, by Content-Length only; 413/400/501 before reading anything bad."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise ApiError(501, "Transfer-Encoding is not supported; send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            raise ApiError(400, "More than one Content-Length header")
        if not lengths:
            return None                         # read_json answers 411 where a body is needed
        text = lengths[0].strip()
        if not text.isdigit() or not text.isascii():
            raise ApiError(400, "Content-Length must be a non-negative integer")
        length = int(text)
        if length > MAX_BODY:
            raise ApiError(413, f"Body is larger than {MAX_BODY} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ApiError(400, "Body ended before Content-Length bytes")
        return body

    def send_error(self, code, message=None, explain=None):
        """Protocol errors from the standard library, as JSON like every other error."""
        self.close_connection = True
        phrase = STATUS_PHRASES.get(code, "Error")
        try:
            self.wfile.write(render_response(code, error_body(message or phrase), close=True))
        except OSError:
            pass
        app = self.server.app
        app.log("info", "request", method=getattr(self, "command", None), path="unmatched",
                status=code, client=self.client_address[0])

    def log_message(self, format, *args):
        pass                                    # every request is logged once, as JSON


class Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on concurrent connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, app):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(OVERLOADED)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        """A connection that failed (reset, timed out): one log line, no traceback."""
        error = sys.exc_info()[1]
        level = "debug" if isinstance(error, (ConnectionError, TimeoutError)) else "error"
        self.app.log(level, "connection failed", client=client_address[0], error=repr(error),
                     traceback=traceback.format_exc() if level == "error" else None)


# ---------------------------------------------------------------- start-up

def lock_zone_dir(directory):
    """One bindcar per zone directory: an exclusive flock on a file there."""
    path = os.path.join(directory, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"another bindcar (PID {holder}) is using {directory}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_zone_dir(directory):
    if not os.path.isdir(directory):
        raise ConfigError(f"BIND_ZONE_DIR: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"BIND_ZONE_DIR: {directory} is not writable by this user")


def main(argv=None, environ=None):
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv:
        print(f"bindcar: unknown argument {argv[0]!r}; see --help", file=sys.stderr)
        return 2
    try:
        config = load_config(environ)
        log = Log(config.log_level)
        logging.getLogger("rndc_proto").addHandler(_ToLog(log))
        check_zone_dir(config.zone_dir)
        lock_fd = lock_zone_dir(config.zone_dir)
        app = App(config, log)
        app.scan_zone_dir()
        server = Server((config.address, config.port), app)
    except ConfigError as e:
        print(f"bindcar: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"bindcar: cannot listen on {environ.get('BIND_API_ADDRESS', '0.0.0.0')}:"
              f"{environ.get('API_PORT', '8080')}: {e.strerror or e}", file=sys.stderr)
        return 2
    log("info", "starting", version=VERSION, **config.describe())
    if config.auth_mode == "disabled":
        log("warn", "authentication is DISABLED (DISABLE_AUTH=true): anyone who reaches "
            "this port can change every zone")
    elif config.auth_mode == "format-only":
        log("warn", "format-only authentication: any well-formed Bearer token is accepted")
    log("info", "listening", address=config.address, port=server.server_address[1],
        zones=len(app.zones))

    def stop(signum, frame):
        log("info", "stopping", signal=signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=SHUTDOWN_POLL)
    finally:
        server.server_close()
        with app.lock:                          # let a change in progress finish
            app.rndc.close()
        os.close(lock_fd)
        log("info", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
