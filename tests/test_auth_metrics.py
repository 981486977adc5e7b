"""Kubernetes TokenReview against a local HTTPS API server, metrics, OpenAPI, rate limits."""

import http.server
import json
import math
import os
import re
import ssl
import subprocess
import threading
import time

import pytest

import bindcar
from conftest import free_port
from test_bindcar import zone_body

POD_TOKEN = "pod-sa-token-0"
SA = "system:serviceaccount:bindy-system:bindy"

# client token -> what kube-apiserver's TokenReview says of it
REVIEWS = {
    "tok-bindy": {"authenticated": True, "user": SA, "audiences": ["bindcar"]},
    "tok-other-ns": {"authenticated": True, "user": "system:serviceaccount:other:bindy",
                     "audiences": ["bindcar"]},
    "tok-other-sa": {"authenticated": True,
                     "user": "system:serviceaccount:bindy-system:intruder",
                     "audiences": ["bindcar"]},
    "tok-user": {"authenticated": True, "user": "alice@example.com", "audiences": ["bindcar"]},
    # a pod's default token, reviewed by an audience-aware API server:
    "tok-wrong-aud": {"error": '[invalid bearer token, token audiences '
                               '["https://kubernetes.default.svc.cluster.local"] is invalid '
                               'for the target audiences ["bindcar"]]'},
    # an authenticator that is not audience-aware: valid, but only for the API server
    "tok-no-aud": {"authenticated": True, "user": SA, "audiences": None},
}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt", "-days", "2",
            "-subj", f"/CN={name} test CA", cwd=directory)
    return os.path.join(directory, f"{name}-ca.crt")


def make_server_cert(directory, ca):
    """A certificate for 127.0.0.1 signed by ``ca``, as a cluster's CA signs the API server's."""
    with open(os.path.join(directory, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver",
            cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}-ca.crt", "-CAkey", f"{ca}-ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf",
            cwd=directory)
    return os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")


class FakeKubeApi(http.server.ThreadingHTTPServer):
    """Answers POST /apis/authentication.k8s.io/v1/tokenreviews as kube-apiserver does."""

    daemon_threads = True

    def __init__(self, cert, key):
        super().__init__(("127.0.0.1", free_port()), KubeHandler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.mode, self.delay, self.reviews = "normal", 0.0, []
        self.pod_token = POD_TOKEN
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        pass                                          # clients that drop TLS mid-way


def status_object(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class KubeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, obj=None, raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        api = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
            return self.reply(404, status_object(404, "NotFound", "the server could not find "
                                                 "the requested resource"))
        if self.headers.get("Authorization") != f"Bearer {api.pod_token}":
            return self.reply(401, status_object(401, "Unauthorized", "Unauthorized"))
        if api.mode == "forbidden":
            return self.reply(403, status_object(
                403, "Forbidden", 'tokenreviews.authentication.k8s.io is forbidden: User '
                '"system:serviceaccount:dns:bindcar" cannot create resource "tokenreviews" in '
                'API group "authentication.k8s.io" at the cluster scope'))
        if api.mode == "garbage":
            return self.reply(201, raw=b"<html>proxy error</html>")
        time.sleep(api.delay)
        assert body["kind"] == "TokenReview" and body["apiVersion"] == "authentication.k8s.io/v1"
        spec = body["spec"]
        api.reviews.append(spec)
        known = REVIEWS.get(spec["token"])
        if known is None:
            status = {"user": {}, "error": "[invalid bearer token, square/go-jose: error in "
                                           "cryptographic primitive, token lookup failed]"}
        elif "error" in known:
            status = {"user": {}, "error": known["error"]}
        else:
            namespace = known["user"].split(":")[2] if known["user"].count(":") == 3 else None
            groups = ["system:authenticated"]
            if namespace:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"] + groups
            status = {"authenticated": True, "user": {
                "username": known["user"], "uid": "6c1b8e8e-5d0a-4a43-9b0e-0c7a3f2d9c11",
                "groups": groups,
                "extra": {"authentication.kubernetes.io/pod-name": ["bindy-5d9c7b8f6d-x2x7q"],
                          "authentication.kubernetes.io/pod-uid":
                              ["0f6d4b55-2a4e-4f5e-9d61-7f3b7a0c9e21"]}}}
            if known["audiences"] is not None:
                status["audiences"] = known["audiences"]
        self.reply(201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                         "metadata": {"creationTimestamp": None}, "spec": spec,
                         "status": status})


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("pki"))
    cluster_ca = make_ca(directory, "cluster")
    other_ca = make_ca(directory, "other")
    cert, key = make_server_cert(directory, "cluster")
    token = os.path.join(directory, "token")
    with open(token, "w") as f:
        f.write(POD_TOKEN)
    return {"dir": directory, "ca": cluster_ca, "other_ca": other_ca, "cert": cert, "key": key,
            "token": token}


@pytest.fixture(scope="module")
def kube(pki):
    api = FakeKubeApi(pki["cert"], pki["key"])
    yield api
    api.shutdown()
    api.server_close()


def kube_env(pki, kube, **extra):
    env = {"BIND_API_TOKEN": None, "KUBE_API_SERVER": kube.url, "KUBE_TOKEN_PATH": pki["token"],
           "KUBE_CA_CERT_PATH": pki["ca"], "KUBE_API_TIMEOUT": "1",
           "BIND_ALLOWED_NAMESPACES": "bindy-system", "BIND_ALLOWED_SERVICE_ACCOUNTS": SA}
    env.update(extra)
    return env


@pytest.fixture
def reviewed(make_bindcar, named, pki, kube):
    kube.mode, kube.delay = "normal", 0.0
    kube.reviews.clear()
    return make_bindcar(named, **kube_env(pki, kube))


@pytest.mark.parametrize("token, status, message", [
    ("tok-bindy", 200, None),
    ("tok-wrong-aud", 401, "Unauthorized"),
    ("tok-no-aud", 401, "Unauthorized"),
    ("not-a-token", 401, "Unauthorized"),
    ("tok-other-ns", 403, "Namespace other is not allowed"),
    ("tok-other-sa", 403, "ServiceAccount system:serviceaccount:bindy-system:intruder "
                          "is not allowed"),
    ("tok-user", 403, "Only Kubernetes ServiceAccounts may call this API"),
])
def test_tokenreview_decides(reviewed, kube, token, status, message):
    got, body, _ = reviewed.request("GET", "/api/v1/zones", token=token)
    assert got == status
    if message:
        assert body == {"error": message, "details": None}
    assert kube.reviews[-1] == {"token": token, "audiences": ["bindcar"]}


def test_positive_reviews_are_cached_and_identity_is_logged(reviewed, kube):
    for _ in range(5):
        assert reviewed.request("GET", "/api/v1/zones", token="tok-bindy")[0] == 200
    assert [r["token"] for r in kube.reviews] == ["tok-bindy"]
    for _ in range(2):
        assert reviewed.request("GET", "/api/v1/zones", token="not-a-token")[0] == 401
    assert len(kube.reviews) == 3                         # refusals are not cached
    deadline = time.monotonic() + 5
    while not [r for r in reviewed.log_records() if r.get("identity") == SA]:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_open_paths_need_no_review(reviewed, kube):
    for path in ("/health", "/ready", "/metrics"):
        assert reviewed.request("GET", path, token=None)[0] == 200
    assert kube.reviews == []


@pytest.mark.parametrize("mode", ["forbidden", "garbage", "slow", "pod-token-refused"])
def test_api_server_failures_never_let_a_request_through(reviewed, kube, mode):
    if mode == "slow":
        kube.delay = 3.0
    elif mode == "pod-token-refused":
        kube.pod_token = "rotated-elsewhere"
    else:
        kube.mode = mode
    try:
        started = time.monotonic()
        status, body, _ = reviewed.request("GET", "/api/v1/zones", token="tok-bindy")
        assert (status, body["error"]) == (503, "Authentication service unavailable")
        assert time.monotonic() - started < 2.5                    # KUBE_API_TIMEOUT=1
    finally:
        kube.mode, kube.delay, kube.pod_token = "normal", 0.0, POD_TOKEN
    if mode == "forbidden":
        assert "system:auth-delegator" in reviewed.log_text()


def test_api_server_down_is_503(make_bindcar, named, pki, kube):
    closed = f"https://127.0.0.1:{free_port()}"
    server = make_bindcar(named, **kube_env(pki, kube, KUBE_API_SERVER=closed))
    status, body, _ = server.request("GET", "/api/v1/zones", token="tok-bindy")
    assert (status, body["error"]) == (503, "Authentication service unavailable")


def test_ca_mismatch_is_503(make_bindcar, named, pki, kube):
    server = make_bindcar(named, **kube_env(pki, kube, KUBE_CA_CERT_PATH=pki["other_ca"]))
    kube.reviews.clear()
    assert server.request("GET", "/api/v1/zones", token="tok-bindy")[0] == 503
    assert kube.reviews == []
    assert "CERTIFICATE_VERIFY_FAILED" in server.log_text()


def test_rotated_pod_token_is_read_again(reviewed, kube, pki):
    try:
        with open(pki["token"], "w") as f:
            f.write("pod-sa-token-1")
        kube.pod_token = "pod-sa-token-1"
        assert reviewed.request("GET", "/api/v1/zones", token="tok-bindy")[0] == 200
    finally:
        with open(pki["token"], "w") as f:
            f.write(POD_TOKEN)
        kube.pod_token = POD_TOKEN


def test_in_cluster_variables_choose_tokenreview(pki):
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
           "KUBE_TOKEN_PATH": pki["token"], "KUBE_CA_CERT_PATH": pki["ca"],
           "RNDC_SECRET": "c2VjcmV0", "BIND_ALLOWED_NAMESPACES": "a,b"}
    config = bindcar.load_config(env)
    assert config.auth_mode == "tokenreview"
    assert config.kube.api_server == "https://10.96.0.1:443"
    assert config.kube.namespaces == {"a", "b"}
    env["BIND_API_TOKEN"] = "shared"
    assert bindcar.load_config(env).auth_mode == "token"


@pytest.mark.parametrize("extra, words", [
    ({"BIND_ALLOWED_NAMESPACES": None, "BIND_ALLOWED_SERVICE_ACCOUNTS": None},
     "TokenReview needs an allowlist"),
    ({"BIND_ALLOWED_SERVICE_ACCOUNTS": "bindy"}, "BIND_ALLOWED_SERVICE_ACCOUNTS"),
    ({"KUBE_CA_CERT_PATH": "/nonexistent/ca.crt"}, "KUBE_CA_CERT_PATH"),
    ({"KUBE_TOKEN_PATH": "/nonexistent/token"}, "KUBE_TOKEN_PATH"),
    ({"KUBE_API_SERVER": "http://127.0.0.1:1"}, "must be an https:// URL"),
])
def test_tokenreview_misconfiguration_stops_at_start(make_bindcar, named, pki, kube, extra,
                                                     words):
    server = make_bindcar(named, start=False, **kube_env(pki, kube, **extra))
    server.start(wait=False)
    assert server.proc.wait(20) == 2
    assert words in server.log_text() and server.log_text().count("\n") == 1


def test_allow_any_serviceaccount(make_bindcar, named, pki, kube):
    server = make_bindcar(named, **kube_env(pki, kube, BIND_ALLOWED_NAMESPACES=None,
                                            BIND_ALLOWED_SERVICE_ACCOUNTS=None,
                                            BIND_ALLOW_ANY_SERVICEACCOUNT="true"))
    assert server.request("GET", "/api/v1/zones", token="tok-other-ns")[0] == 200
    assert server.request("GET", "/api/v1/zones", token="tok-user")[0] == 403


def test_review_cache_holds_hashes_only_and_is_bounded(pki, kube):
    settings = bindcar.load_config({
        "KUBE_API_SERVER": kube.url, "KUBE_TOKEN_PATH": pki["token"],
        "KUBE_CA_CERT_PATH": pki["ca"], "RNDC_SECRET": "c2VjcmV0",
        "BIND_ALLOW_ANY_SERVICEACCOUNT": "true"}).kube
    reviewer = bindcar.TokenReviewer(settings, lambda *a, **k: None)
    assert reviewer.identify("tok-bindy") == SA
    assert all(len(k) == 32 and b"tok-bindy" not in k for k in reviewer.cache)
    assert "tok-bindy" not in repr(reviewer.cache)
    for _ in range(bindcar.REVIEW_CACHE_SIZE):                   # fill it with live entries
        reviewer.cache[os.urandom(32)] = (time.monotonic() + 60, SA)
    assert reviewer.identify("tok-other-ns") == "system:serviceaccount:other:bindy"
    assert len(reviewer.cache) <= bindcar.REVIEW_CACHE_SIZE


# ------------------------------------------------------------------ metrics

SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')


def parse_prometheus(text):
    """A strict parser of text format 0.0.4: {family: (type, [(name, labels, value)])}."""
    assert text.endswith("\n")
    families, current = {}, None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in families, f"{name} declared twice"
            families[name], current = [None, []], name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name == current and kind in ("counter", "gauge", "histogram")
            families[name][0] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"bad sample line: {line!r}"
            name, labels_text, value = match.groups()
            base = re.sub(r"_(bucket|sum|count)\Z", "", name) \
                if families.get(current, [None])[0] == "histogram" else name
            assert base == current, f"{name} outside its family"
            labels, pos = {}, 0
            while labels_text and pos < len(labels_text):
                label = LABEL.match(labels_text, pos)
                assert label, f"bad labels: {labels_text!r}"
                labels[label.group(1)] = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(
                    m.group(1), m.group(1)), label.group(2))
                pos = label.end()
            families[current][1].append((name, labels, float(value)))
    for name, (kind, samples) in families.items():
        assert kind, f"{name} has no TYPE"
        if kind != "histogram":
            continue
        series = {}
        for sample, labels, value in samples:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series.setdefault(key, {"buckets": [], "sum": None, "count": None})
            if sample.endswith("_bucket"):
                series[key]["buckets"].append((labels["le"], value))
            else:
                series[key][sample.rsplit("_", 1)[1]] = value
        for key, parts in series.items():
            values = [v for _, v in parts["buckets"]]
            assert values == sorted(values), f"{name}{key} buckets are not cumulative"
            assert parts["buckets"][-1][0] == "+Inf"
            assert parts["buckets"][-1][1] == parts["count"], f"{name}{key} +Inf != count"
            bounds = [float(le) for le, _ in parts["buckets"][:-1]]
            assert bounds == sorted(bounds) and bounds[0] == 0.0001 and bounds[-1] == 10
            assert parts["sum"] is not None and parts["sum"] >= 0
    return families


def test_metrics_are_strict_prometheus_text(make_bindcar, named, unique):
    server = make_bindcar(named)
    zone = f"{unique}.example"
    server.request("POST", "/api/v1/zones", zone_body(zone))
    server.request("GET", f"/api/v1/zones/{zone}")
    server.request("GET", "/api/v1/zones/nosuch.example")
    server.request("GET", "/api/v1/zones", token="wrong")
    status, text, resp = server.request("GET", "/metrics", token=None)
    assert status == 200
    assert resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    families = parse_prometheus(text)
    requests = {(s[1]["method"], s[1]["path"], s[1]["status"]): s[2]
                for s in families["bindcar_http_requests_total"][1]}
    assert requests[("POST", "/api/v1/zones", "201")] == 1
    assert requests[("GET", "/api/v1/zones/{name}", "200")] == 1
    assert requests[("GET", "/api/v1/zones/{name}", "404")] == 1
    assert requests[("GET", "/api/v1/zones", "401")] == 1
    ops = {(s[1]["operation"], s[1]["result"]): s[2]
           for s in families["bindcar_zone_operations_total"][1]}
    assert ops[("create", "success")] == 1
    commands = {s[1]["command"] for s in families["bindcar_rndc_commands_total"][1]}
    assert {"zonestatus", "addzone"} <= commands and all(" " not in c for c in commands)
    managed = families["bindcar_zones_managed"][1][0][2]
    assert managed == server.request("GET", "/api/v1/zones")[1]["count"] == 1
    assert families["bindcar_app_info"][1][0][1] == {"version": bindcar.VERSION}
    rss = families["process_resident_memory_bytes"][1][0][2]
    assert 5e6 < rss < 500e6
    assert abs(families["process_start_time_seconds"][1][0][2] - time.time()) < 600
    assert families["process_open_fds"][1][0][2] >= 3
    server.request("DELETE", f"/api/v1/zones/{zone}")


def test_ten_thousand_bogus_paths_add_no_series(make_bindcar, named):
    server = make_bindcar(named)
    conn = server.connection()
    for i in range(100):
        server.request("GET", f"/bogus/{i}", conn=conn)
    before = server.request("GET", "/metrics", token=None)[1].count("\n")
    for i in range(10000):
        server.request("GET", f"/bogus/{i}/x?y={i}", conn=conn)
        if i % 2500 == 0:
            server.request("FROB", f"/bogus/{i}", conn=server.connection())
    conn.close()
    text = server.request("GET", "/metrics", token=None)[1]
    parse_prometheus(text)
    assert "bogus" not in text
    assert text.count("\n") <= before + 2 * (len(bindcar.BUCKETS) + 4)     # FROB -> OTHER


# ------------------------------------------------------------------ OpenAPI and rate limits

def test_openapi_document_matches_the_route_table(make_bindcar, named):
    server = make_bindcar(named, BIND_ENABLE_DOCS="true")
    status, doc, _ = server.request("GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(m, t) for m, t, *_ in bindcar.App.ROUTES}
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(doc))
    assert refs and set(refs) <= set(doc["components"]["schemas"])
    create = doc["paths"]["/api/v1/zones"]["post"]
    assert {"201", "400", "401", "409"} <= set(create["responses"])
    assert set(doc["components"]["schemas"]["ZoneConfig"]["properties"]) == \
        set(bindcar.zonefile.ZONE_CONFIG_FIELDS)


def test_openapi_is_off_by_default(bindcar):
    assert bindcar.request("GET", "/api/v1/openapi.json", token=None)[0] == 404


def test_rate_limit_per_client_with_retry_after(make_bindcar, named):
    server = make_bindcar(named, RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS="2",
                          RATE_LIMIT_PERIOD_SECS="60", RATE_LIMIT_BURST="3")
    statuses = [server.request("GET", "/api/v1/zones")[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body, resp = server.request("GET", "/api/v1/zones")
    assert (status, body) == (429, {"error": "Too many requests", "details": None})
    assert 1 <= int(resp.getheader("Retry-After")) <= math.ceil(60 / 2)
    assert server.request("GET", "/health", token=None)[0] == 200       # probes are exempt
    assert server.request("GET", "/metrics", token=None)[0] == 200


def test_rate_limiter_refills_and_forgets():
    limiter = bindcar.RateLimiter(10, 1, 2)
    assert [limiter.take("a") for _ in range(2)] == [0, 0]
    assert 0 < limiter.take("a") <= 0.1
    time.sleep(0.11)
    assert limiter.take("a") == 0
    for i in range(bindcar.MAX_BUCKETS + 5):
        limiter.take(f"c{i}")
    assert len(limiter.buckets) <= bindcar.MAX_BUCKETS


def test_label_values_are_escaped_and_parse_back():
    metrics = bindcar.Metrics()
    odd = 'a"b\\c\nd'
    metrics.count("bindcar_rndc_commands_total", (odd, "success"))
    metrics.observe("bindcar_rndc_command_duration_seconds", (odd,), 0.003)
    metrics.observe("bindcar_rndc_command_duration_seconds", (odd,), 42.0)
    families = parse_prometheus(metrics.render([]).decode())
    (_, labels, value), = families["bindcar_rndc_commands_total"][1]
    assert labels == {"command": odd, "result": "success"} and value == 1
    samples = families["bindcar_rndc_command_duration_seconds"][1]
    inf = [s for s in samples if s[1].get("le") == "+Inf"][0]
    assert inf[2] == 2 and [s for s in samples if s[1].get("le") == "10.0"][0][2] == 1


@pytest.mark.parametrize("env, level", [
    ({}, "info"), ({"RUST_LOG": "debug"}, "debug"), ({"RUST_LOG": "bindcar=warn"}, "warn"),
    ({"RUST_LOG": "trace"}, "debug"), ({"LOG_LEVEL": "error", "RUST_LOG": "debug"}, "error"),
])
def test_log_level_from_log_level_or_rust_log(env, level):
    config = bindcar.load_config(dict(env, RNDC_SECRET="c2VjcmV0", BIND_API_TOKEN="t"))
    assert config.log_level == level


def test_rate_limits_per_identity_and_failures_per_address(make_bindcar, named, pki, kube):
    """A stranger's refused tokens use up a bucket of their own, not bindy's, which is
    counted by its ServiceAccount; past that budget, no more reviews are asked for the
    stranger's address, while bindy's reviewed token still passes."""
    kube.mode, kube.delay = "normal", 0.0
    kube.reviews.clear()
    server = make_bindcar(named, **kube_env(pki, kube, RATE_LIMIT_ENABLED="true",
                                            RATE_LIMIT_REQUESTS="1",
                                            RATE_LIMIT_PERIOD_SECS="60", RATE_LIMIT_BURST="2"))
    assert server.request("GET", "/api/v1/zones", token="tok-bindy")[0] == 200
    strangers = [server.request("GET", "/api/v1/zones", token=f"bad-{i}")[0] for i in range(6)]
    assert strangers == [401, 401, 429, 429, 429, 429]
    assert len(kube.reviews) == 3                   # bindy's, and two of the stranger's
    assert [server.request("GET", "/api/v1/zones", token="tok-bindy")[0]
            for _ in range(2)] == [200, 429]        # bindy's own bucket: 2, then empty
