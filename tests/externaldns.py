"""A client of bindcar's webhook that behaves as external-dns's own
(``provider/webhook/webhook.go``, v0.22): the same requests, byte for byte where it
matters (Go's headers, ``json.Encoder``'s body with its final newline), and the same
reading of each answer:

- negotiation (``GET /``) is tried up to 5 times on a connection error or a 5xx; a
  3xx or 4xx stops it; the answer's Content-Type must equal the media type exactly;
- ``GET /records`` must be 200, ``POST /records`` 204, ``POST /adjustendpoints`` 200;
  another status from 500 to 510 is a soft error (external-dns logs it and tries
  again at its next interval), anything else a hard one (its run fails and it exits).

And what external-dns's TXT registry makes of a record (``registry/txt``): its TXT
record, named by the record's type (``a-www.example.com``), whose text is quoted.
"""

import http.client
import json
import time

MEDIA_TYPE = "application/external.dns.webhook+json;version=1"
NEGOTIATE_TRIES = 5


class SoftError(Exception):
    """A 5xx external-dns retries at its next interval."""


class HardError(Exception):
    """What makes external-dns's run fail: it exits (and Kubernetes restarts it)."""


def _go_json(value):
    """Go's json.Encoder: compact, <, > and & escaped, non-ASCII as it is, a newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return (text + "\n").encode()


class ExternalDNS:
    """``--provider=webhook --webhook-provider-url=http://localhost:PORT``."""

    def __init__(self, port, host="localhost", timeout=15.0):
        self.port, self.host, self.timeout = port, host, timeout   # read + write timeouts
        self.domain_filter = None

    def _request(self, method, path, body=None, headers=()):
        """(status, headers, body) as Go's client sends and reads it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{self.host}:{self.port}")
            conn.putheader("User-Agent", "Go-http-client/1.1")
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            for name, value in sorted(headers):
                conn.putheader(name, value)
            conn.putheader("Accept-Encoding", "gzip")
            conn.endheaders(body)
            reply = conn.getresponse()
            return reply.status, reply, reply.read()
        finally:
            conn.close()

    @staticmethod
    def _judge(status, expected, call):
        if status == expected:
            return
        if 500 <= status <= 510:
            raise SoftError(f"failed to {call} with code {status}")
        raise HardError(f"failed to {call} with code {status}")

    def negotiate(self):
        """The domain filter, or HardError (external-dns does not start)."""
        wait = 0.05
        for attempt in range(NEGOTIATE_TRIES):
            try:
                status, reply, data = self._request(
                    "GET", "/", headers=[("Accept", MEDIA_TYPE)])
            except OSError as e:
                status, error = None, e
            if status is not None and status < 500:
                break
            if attempt + 1 == NEGOTIATE_TRIES:
                raise HardError(f"failed to connect to webhook: {status or error}")
            time.sleep(wait)                # backoff's, made short for the tests
            wait *= 1.5
        if status >= 300:
            raise HardError(f"failed to connect to webhook: unexpected status code {status}")
        content_type = reply.getheader("Content-Type")
        if content_type != MEDIA_TYPE:
            raise HardError(f"wrong content type returned from server: {content_type}")
        self.domain_filter = json.loads(data)
        return self.domain_filter

    @staticmethod
    def _endpoints(data, call):
        """A JSON array of endpoints (null as none), else external-dns's hard error."""
        try:
            endpoints = json.loads(data)
        except ValueError as e:
            raise HardError(f"failed to unmarshal response body of {call}: {e}") from None
        if endpoints is not None and not isinstance(endpoints, list):
            raise HardError(f"failed to unmarshal response body of {call}: not an array")
        return endpoints or []

    def records(self):
        status, _, data = self._request("GET", "/records", headers=[("Accept", MEDIA_TYPE)])
        self._judge(status, 200, "get records")
        return self._endpoints(data, "records")

    def apply(self, create=(), update_old=(), update_new=(), delete=()):
        """plan.Changes as external-dns 0.17+ sends them: empty lists left out."""
        changes = {key: list(value) for key, value in (
            ("create", create), ("updateOld", update_old), ("updateNew", update_new),
            ("delete", delete)) if value}
        self.apply_body(_go_json(changes))

    def apply_body(self, body):
        status, _, _ = self._request("POST", "/records", body,
                                     headers=[("Content-Type", MEDIA_TYPE)])
        self._judge(status, 204, "apply changes")

    def adjust(self, endpoints):
        status, _, data = self._request(
            "POST", "/adjustendpoints", _go_json(list(endpoints)),
            headers=[("Content-Type", MEDIA_TYPE), ("Accept", MEDIA_TYPE)])
        self._judge(status, 200, "AdjustEndpoints")
        return self._endpoints(data, "AdjustEndpoints")


def endpoint(name, rtype, *targets, ttl=0, labels=None):
    """endpoint.Endpoint as JSON: empty fields left out (omitempty)."""
    result = {"dnsName": name, "targets": list(targets), "recordType": rtype}
    if ttl:
        result["recordTTL"] = ttl
    if labels:
        result["labels"] = labels
    return result


def owned(name, rtype, *targets, ttl=3600, owner="default", resource="service/default/web"):
    """A record as external-dns sends it (its TTL as /adjustendpoints gave it), and its
    registry TXT record: (record, txt)."""
    labels = {"owner": owner, **({"resource": resource} if resource else {})}
    record = endpoint(name, rtype, *targets, ttl=ttl, labels=labels)
    return record, registry_txt(record)


def registry_txt(record):
    """The TXT registry's record for ``record``: ``<type>-`` before its first label; the
    text ``"heritage=external-dns,external-dns/<label>=<value>,..."``, every label of the
    record with its keys sorted, in quotes; no TTL; the label ``ownedRecord``."""
    text = ",".join(["heritage=external-dns"] + [f"external-dns/{key}={value}" for key, value
                                                 in sorted(record["labels"].items())])
    return endpoint(f"{record['recordType'].lower()}-{record['dnsName']}", "TXT", f'"{text}"',
                    labels={"ownedRecord": record["dnsName"]})


def as_sent(*pairs):
    """(record, txt) pairs as external-dns sends them in one list: every record first,
    then the registry TXT records it appended (registry/txt ApplyChanges)."""
    return [p[0] for p in pairs] + [p[1] for p in pairs]
