"""rndc_proto: the wire format against captured vectors, the client against real named."""

import base64
import glob
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import rndc_proto
from rndc_proto import (RndcClient, RndcCommandError, RndcConfigError,
                        RndcConnectionError, load_config)

from conftest import ALGORITHMS, ROOT

VECTORS = os.path.join(os.path.dirname(ROOT), "shared", "rndc-vectors")
VECTOR_FILES = sorted(glob.glob(os.path.join(VECTORS, "*.json"))
                      + glob.glob(os.path.join(VECTORS, "probes", "*.json")))


def vector(name):
    with open(os.path.join(VECTORS, name)) as f:
        return json.load(f)


def messages(v):
    return [bytes.fromhex(m["hex"]) for m in v["messages"]]


def write_zone(named, zone, serial=2024010101, extra=""):
    """A small valid zone file in named's directory; returns its file name."""
    name = f"{zone}.zone"
    with open(os.path.join(named.dir, name), "w") as f:
        f.write(f"$TTL 300\n@ IN SOA ns1.{zone}. admin.{zone}. {serial} 3600 600 604800 300\n"
                f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.1\n{extra}")
    return name


# ------------------------------------------------------------------ vectors

def test_vectors_are_present():
    assert len(VECTOR_FILES) >= 48, VECTORS


@pytest.mark.parametrize("path", VECTOR_FILES, ids=os.path.basename)
def test_vector_decodes_verifies_and_reencodes_byte_for_byte(path):
    with open(path) as f:
        v = json.load(f)
    key = base64.b64decode(v["secret_b64"])
    for raw in messages(v):
        (length,) = rndc_proto._LEN.unpack(raw[:4])
        assert length == len(raw) - 4
        msg = rndc_proto.decode_message(raw[4:], v["algorithm"], key)
        assert list(msg) == ["_auth", "_ctrl", "_data"]
        again = rndc_proto.encode_message(msg["_ctrl"], msg["_data"], v["algorithm"], key)
        assert again == raw


def test_vector_reply_fields_match_the_notes():
    reply = rndc_proto.decode_message(messages(vector("zonestatus-not-found.json"))[-1][4:])
    assert reply["_data"]["result"] == b"23"
    assert reply["_data"]["err"] == b"not found"
    assert reply["_data"]["text"] == b"no matching zone 'nosuch.test' in any view"
    handshake = rndc_proto.decode_message(messages(vector("null.json"))[1][4:])
    assert handshake["_ctrl"]["_rpl"] == b"1" and handshake["_ctrl"]["_nonce"].isdigit()


@pytest.mark.parametrize("name", [f"status-{alg}.json" for alg in ALGORITHMS])
def test_tampered_byte_fails_verification(name):
    v = vector(name)
    key = base64.b64decode(v["secret_b64"])
    for raw in messages(v):
        body = bytearray(raw[4:])
        for pos in (len(body) - 1, len(body) // 2, 40):   # data, middle, signature
            tampered = bytearray(body)
            tampered[pos] ^= 0x01
            with pytest.raises(ValueError):
                rndc_proto.decode_message(bytes(tampered), v["algorithm"], key)


def test_wrong_secret_vector_fails_with_the_servers_secret():
    v = vector("wrong-secret.json")
    raw = messages(v)[0][4:]
    rndc_proto.decode_message(raw, v["algorithm"], base64.b64decode(v["secret_b64"]))
    with pytest.raises(ValueError, match="signature"):
        rndc_proto.decode_message(raw, v["algorithm"],
                                  base64.b64decode(v["server_secret_b64"]))


def test_md5_signature_has_no_padding_and_sha_is_nul_filled():
    md5 = rndc_proto.signature_field(b"x", "hmac-md5", b"k")
    assert len(md5) == 22 and b"=" not in md5
    sha = rndc_proto.signature_field(b"x", "hmac-sha256", b"k")
    assert len(sha) == 89 and sha[0] == 163 and sha.endswith(b"\0" * 44)


def test_list_and_nested_tables_round_trip():
    data = {"a": [b"x", {"b": b"y"}, [b"z"]], "t": {"u": b""}}
    assert rndc_proto.decode_table(rndc_proto.encode_table(data)) == data


@pytest.mark.parametrize("blob, why", [
    (b"\x01k\x00\x00\x00\x00\x00", "unknown value type 0"),          # STRING tag: named rejects
    (b"\x01k\x07\x00\x00\x00\x00", "unknown value type 7"),
    (b"\x01k\x01\x00\x00\x00\x09abc", "longer than its container"),
    (b"\x01k\x01\x00\x00", "truncated value header"),
    (b"\x05ab", "truncated key"),
])
def test_malformed_tables_are_refused(blob, why):
    with pytest.raises(ValueError, match=why):
        rndc_proto.decode_table(blob)


def test_nesting_deeper_than_named_allows_is_refused():
    deep = b"v"
    for _ in range(6):
        deep = {"t": deep}
    with pytest.raises(ValueError, match="too deep"):
        rndc_proto.decode_table(rndc_proto.encode_table(deep))


def test_message_whose_first_entry_is_not_auth_is_refused():
    body = b"\x00\x00\x00\x01" + rndc_proto.encode_table({"_ctrl": {}, "_auth": {}})
    with pytest.raises(ValueError, match="not _auth"):
        rndc_proto.decode_message(body)
    with pytest.raises(ValueError, match="version 1"):
        rndc_proto.decode_message(b"\x00\x00\x00\x02" + body[4:])


# ------------------------------------------------------------------ commands refused before sending

@pytest.mark.parametrize("command", [
    " addzone ws.test { type primary; file \"ws.test.zone\"; };",   # aborts named 9.18
    "status ", "\tstatus", "", "status\x00", "status\r", "status\nstop",
    "zonestatus ex\x7fample.test", "zonestatus exämple.test", "zonestatus \u0661.test",
])
def test_dangerous_command_is_refused_and_named_survives(named, command):
    client = named.client()
    with pytest.raises(ValueError):
        client.call(command)
    assert "server is up and running" in client.call("status")
    assert named.alive()


def test_frame_over_named_limit_is_refused_and_32768_is_accepted(named):
    client = named.client()
    client.call("status")                                  # the frame now carries a nonce
    client._serial = 2_000_000_000                         # ten digits for the next few
    fixed = len(client._frame("zonestatus ")) - 4
    with pytest.raises(ValueError, match="at most 32768"):
        client.call("zonestatus " + "a" * (32769 - fixed))
    with pytest.raises(RndcCommandError, match="label too long"):   # named took and answered it
        client.call("zonestatus " + "a" * (32768 - fixed))
    assert named.alive()


# ------------------------------------------------------------------ live: every algorithm, every command

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_status_with_every_algorithm(named, algorithm):
    with named.client(algorithm) as client:
        assert "server is up and running" in client.call("status")
        assert "server is up and running" in client.call("STATUS")   # case-insensitive


def test_zone_lifecycle_with_every_command(named, unique):
    zone = f"{unique}.test"
    file = write_zone(named, zone)
    client = named.client()
    assert client.call(f'addzone {zone} {{ type primary; file "{file}"; }};') == ""
    status = client.call(f"zonestatus {zone}")
    assert f"name: {zone}" in status and "serial: 2024010101" in status
    assert client.call(f"showzone {zone}") == f'zone "{zone}" {{ type primary; file "{file}"; }};'
    assert client.call(f"reload {zone}") in ("zone reload up-to-date", "zone reload queued",
                                             "zone reload successful")
    assert client.call(f"notify {zone}") == "zone notify queued"
    client.call(f'modzone {zone} {{ type primary; file "{file}"; allow-update {{ 127.0.0.1; }}; }};')
    assert "allow-update" in client.call(f"showzone {zone}")
    assert client.call(f"freeze {zone}") == ""
    assert "frozen: yes" in client.call(f"zonestatus {zone}")
    assert client.call(f"thaw {zone}") in ("The zone reload and thaw was successful.",
                                           "A zone reload and thaw was started.\n"
                                           "Check the logs to see the result.")
    assert named.dig(f"www.{zone}")[1][0].endswith("192.0.2.1")
    text = client.call(f"delzone -clean {zone}")
    assert text == f"zone '{zone}' and associated files will be deleted."
    with pytest.raises(RndcCommandError) as e:
        client.call(f"zonestatus {zone}")
    assert e.value.err == "not found"
    deadline = time.monotonic() + 5                         # -clean runs after the reply
    while os.path.exists(os.path.join(named.dir, file)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(os.path.join(named.dir, file))


def test_error_cases_of_named_raise_command_error_with_its_err(named, unique):
    client = named.client()
    ok, dyn = f"{unique}.test", f"{unique}-dyn.test"
    client.call(f'addzone {ok} {{ type primary; file "{write_zone(named, ok)}"; }};')
    client.call(f'addzone {dyn} {{ type primary; file "{write_zone(named, dyn)}"; '
                f'allow-update {{ 127.0.0.1; }}; }};')
    cases = [
        (f'addzone {ok} {{ type primary; file "{ok}.zone"; }};', "already exists", ""),
        (f'addzone b{unique}.test {{ type primary; file "x.zone" }};', "failure", ""),
        (f'addzone n{unique}.test {{ type primary; file "x.zone"; }}', "failure", ""),
        (f'addzone t{unique}.test {{ file "x.zone"; }};', "failure", "zone type not specified"),
        (f'addzone f{unique}.test {{ type primary; file "does-not-exist.zone"; }};',
         "file not found", "dns_zone_loadnew failed: file not found"),
        (f'addzone v{unique}.test IN nosuchview {{ type primary; file "x.zone"; }};',
         "not found", "no matching view found for 'nosuchview'"),
        ("zonestatus nosuch.test", "not found", "no matching zone 'nosuch.test' in any view"),
        (f"zonestatus {ok} IN nosuchview", "not found", "no matching view 'nosuchview'"),
        (f"reload {dyn}", "dynamic zone", ""),
        ("reload nosuch.test", "not found", "no matching zone 'nosuch.test' in any view"),
        ("freeze static.test", "not dynamic", ""),
        ("delzone nosuch.test", "not found", "no matching zone 'nosuch.test' in any view"),
        ("frobnicate", "unknown command", ""),
    ]
    for command, err, text in cases:
        with pytest.raises(RndcCommandError) as e:
            client.call(command)
        assert (e.value.err, e.value.text) == (err, text), command
        assert e.value.result.isdigit() and e.value.result != "0"
        assert e.value.command == command.split()[0]
    client.call(f"freeze {dyn}")
    with pytest.raises(RndcCommandError) as e:
        client.call(f"freeze {dyn}")
    assert "already frozen" in e.value.text
    client.call(f"thaw {dyn}")
    assert "server is up and running" in client.call("status")   # the connection survived


def test_delzone_of_a_zone_from_named_conf(own_named):
    text = own_named.client().call("delzone static.test")
    assert text.startswith("zone 'static.test' is no longer active and will be deleted.")


def test_wrong_secret_raises_connection_error_naming_what_to_check(named):
    client = named.client(secret=base64.b64encode(b"\0" * 32).decode())
    with pytest.raises(RndcConnectionError, match="secret and algorithm"):
        client.call("status")
    assert named.alive()


def test_wrong_algorithm_raises_connection_error(named):
    client = named.client("hmac-sha512", secret=named.secrets["hmac-sha256"])
    with pytest.raises(RndcConnectionError):
        client.call("status")


def test_nothing_listening_says_is_named_running(named):
    client = RndcClient("127.0.0.1", named.dns_port + 0, "hmac-sha256",
                        named.secrets["hmac-sha256"], timeout=1)
    named_down = RndcClient("127.0.0.1", 1, "hmac-sha256", named.secrets["hmac-sha256"])
    with pytest.raises(RndcConnectionError, match="is named running"):
        named_down.call("status")
    with pytest.raises(RndcConnectionError):   # the DNS port speaks TCP DNS, not rndc
        client.call("status")


def test_secret_never_appears_in_repr_or_errors(named):
    secret = base64.b64encode(b"S" * 32).decode()
    client = RndcClient("127.0.0.1", named.control_port, "hmac-sha256", secret, timeout=1)
    with pytest.raises(RndcConnectionError) as e:
        client.call("status")
    config = rndc_proto.RndcConfig("127.0.0.1", 953, "k", "hmac-sha256", secret)
    for text in (repr(client), str(e.value), repr(config), repr(vars(client))):
        assert secret not in text and "U1NT" not in text


# ------------------------------------------------------------------ live: the kept-open connection

def test_one_connection_carries_many_commands(named):
    client = named.client()
    client.call("status")
    sock = client._sock
    for _ in range(20):
        client.call("status")
    assert client._sock is sock


def test_meanwhile_runs_after_the_command_is_sent_and_before_its_reply_is_read(named, unique):
    client = named.client()
    client.call("status")
    seen = []

    def meanwhile():                  # named is answering: the reply waits on the socket
        seen.append(client._sock.recv(4, socket.MSG_PEEK | socket.MSG_WAITALL))
    assert "server is up and running" in client.call("status", meanwhile)
    assert len(seen) == 1 and len(seen[0]) == 4           # the reply's length prefix

    def fails():
        raise OSError(5, "Input/output error")
    with pytest.raises(OSError):
        client.call("status", fails)
    assert client._sock is None                           # dropped, its reply unread
    assert "server is up and running" in client.call("status")


def test_warnings_go_to_the_callers_warn_when_given(tmp_path, caplog):
    path = write(tmp_path / "rndc.key", 'key "a" { algorithm hmac-md5; secret "YQ=="; };',
                 mode=0o644)
    told = []
    with caplog.at_level(logging.WARNING, logger="rndc_proto"):
        load_config(path, warn=told.append)
    assert len(told) == 1 and "readable by every user" in told[0] and not caplog.text


def test_named_restarted_between_two_calls(own_named):
    client = own_named.client()
    client.call("status")
    own_named.restart()
    assert "server is up and running" in client.call("status")


def test_named_down_then_up_again(own_named):
    client = own_named.client(timeout=1)
    client.call("status")
    own_named.stop()
    with pytest.raises(RndcConnectionError, match="refused"):
        client.call("status")
    own_named.start()
    assert "server is up and running" in client.call("status")


def test_idle_close_by_named_is_survived(quick_idle_named):
    client = quick_idle_named.client()
    client.call("status")
    time.sleep(1.6)                                  # named closes after 1 s idle
    assert "server is up and running" in client.call("status")
    assert "timed out" in quick_idle_named.log_tail()


def test_command_is_not_resent_when_named_may_have_seen_it(own_named, unique):
    """SIGSTOP named mid-command: the call times out and is not retried."""
    zone = f"{unique}.test"
    file = write_zone(own_named, zone)
    client = own_named.client(timeout=0.5)
    client.call("status")
    own_named.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(RndcConnectionError, match="within 0.5 s"):
            client.call(f'addzone {zone} {{ type primary; file "{file}"; }};')
    finally:
        own_named.proc.send_signal(signal.SIGCONT)
    client.timeout = 5
    with pytest.raises(RndcCommandError, match="already exists"):   # it ran once, by itself
        client.call(f'addzone {zone} {{ type primary; file "{file}"; }};')
    assert own_named.log_tail(200).count(f"added zone {zone}") == 1


def test_a_late_reply_is_read_before_anything_more_is_sent(own_named, unique):
    """A command named holds while stopped is owed: nothing more is sent (on this or
    another connection) until its reply comes, so a delzone sent to undo it cannot
    overtake it."""
    zone = f"{unique}.test"
    file = write_zone(own_named, zone)
    client, late = own_named.client(timeout=0.5), []
    client.late = lambda *reply: late.append(reply)
    client.call("status")
    own_named.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(rndc_proto.RndcUnanswered):
            client.call(f'addzone {zone} {{ type primary; file "{file}"; }};')
        with pytest.raises(rndc_proto.RndcUnanswered, match="still not answered 'addzone'") \
                as raised:
            client.call(f"delzone {zone}")
        assert not raised.value.sent
    finally:
        own_named.proc.send_signal(signal.SIGCONT)
    client.call(f"delzone {zone}")
    assert late == [("addzone", "0", "")]
    deadline = time.monotonic() + 5                 # named logs the removal once it is done
    while f"deleting zone {zone}" not in (log := own_named.log_tail(200)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert log.index(f"added zone {zone}") < log.index(f"deleting zone {zone}")
    assert log.count("received control channel command 'delzone") == 1


def test_many_threads_share_one_client_and_get_their_own_replies(named, unique):
    client = named.client()
    zones = [f"{unique}-{i}.test" for i in range(8)]
    for zone in zones:
        client.call(f'addzone {zone} {{ type primary; file "{write_zone(named, zone)}"; }};')
    errors = []

    def worker(zone):
        try:
            for _ in range(40):
                assert f"name: {zone}\n" in client.call(f"zonestatus {zone}")
        except Exception as e:          # collected: a thread's assert is not a test failure
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(z,)) for z in zones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and not any(t.is_alive() for t in threads)
    for zone in zones:
        client.call(f"delzone -clean {zone}")


# ------------------------------------------------------------------ load_config

def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return str(path)


def test_load_config_reads_rndc_confgen_output(tmp_path):
    out = subprocess.run(["rndc-confgen", "-A", "hmac-sha512", "-k", "mykey", "-p", "9953",
                          "-s", "127.0.0.2"], capture_output=True, text=True, check=True).stdout
    config = load_config(write(tmp_path / "rndc.conf", out))
    secret = out.split('secret "', 1)[1].split('"', 1)[0]
    assert config == rndc_proto.RndcConfig("127.0.0.2", 9953, "mykey", "hmac-sha512", secret)


def test_load_config_reads_rndc_confgen_a_key_file(tmp_path):
    path = tmp_path / "rndc.key"
    subprocess.run(["rndc-confgen", "-a", "-c", str(path), "-k", "keyA", "-A", "hmac-sha384"],
                   capture_output=True, check=True)
    config = load_config(str(path))
    assert (config.host, config.port, config.key_name, config.algorithm) == \
        ("127.0.0.1", 953, "keyA", "hmac-sha384")


def test_load_config_comments_includes_and_server_blocks(tmp_path):
    write(tmp_path / "keys" / "k.key" if False else tmp_path / "k.key",
          'key "a" { algorithm "hmac-sha1"; secret "YWFhYQ=="; };  # one\n'
          'key b { algorithm sha256; secret "YmJiYg=="; }; // two\n')
    path = write(tmp_path / "rndc.conf", '/* a\n block */ include "k.key";\n'
                 'options { default-server "ns.example"; default-key "a"; '
                 'default-source-address 127.0.0.1 port 0; };\n'
                 'server ns.example { key b; port 5953; };\n'
                 'server other { key a; };\n')
    assert load_config(path) == rndc_proto.RndcConfig("ns.example", 5953, "b",
                                                      "hmac-sha256", "YmJiYg==")
    assert load_config(path, server="other") == rndc_proto.RndcConfig(
        "other", 953, "a", "hmac-sha1", "YWFhYQ==")
    assert load_config(path, server="x", port=1, key_name="b").port == 1


@pytest.mark.parametrize("text, where, why", [
    ('key "a" { algorithm hmac-sha256; secret "YQ==" };', ":1:", "missing ';' before '}'"),
    ('key "a" {\n algorithm hmac-sha256;\n secret "YQ==; };\n', ":3:", "unterminated string"),
    ('key "a" { algorithm hmac-sha256; secret "YQ=="; }', ":1:", "missing ';'"),
    ('key "a" {\n algorithm hmac-sha256;\n secret "YQ==";\n', ":3:", "missing '}' at end"),
    ('/* key "a" {}; ', ":1:", "unterminated /\\* comment"),
    ('key "a" { algorithm hmac-sha999; secret "YQ=="; };', ":1:", "unknown rndc algorithm"),
    ('key "a" { algorithm hmac-sha256; secret "not base64!"; };', ":1:", "not base64"),
    ('key "a" { algorithm hmac-sha256; };', ":1:", "needs an algorithm and a secret"),
    ('key "a" { algorithm hmac-sha256; secret "YQ=="; };\n}', ":2:", "unexpected '}'"),
    ('options { default-key "zz"; };\nkey "a" { algorithm hmac-md5; secret "YQ=="; };',
     "", "key 'zz' is not defined"),
    ('key "a" { algorithm hmac-md5; secret "YQ=="; };\n'
     'key "b" { algorithm hmac-md5; secret "YQ=="; };', "", "2 keys to choose from"),
    ('', "", "no key clause"),
    ('\ninclude "nowhere.conf";', ":2:", "cannot read .*nowhere.conf"),
    ('options { default-port 99999; };\nkey "a" { algorithm hmac-md5; secret "YQ=="; };',
     "", "not a port number"),
])
def test_malformed_config_names_file_and_line(tmp_path, text, where, why):
    path = write(tmp_path / "bad.conf", text)
    with pytest.raises(RndcConfigError, match=why) as e:
        load_config(path)
    assert str(e.value).startswith(path) and where in str(e.value)


def test_include_loop_is_refused(tmp_path):
    path = write(tmp_path / "loop.conf", 'include "loop.conf";')
    with pytest.raises(RndcConfigError, match="includes itself"):
        load_config(path)


def test_world_readable_key_file_gets_a_warning(tmp_path, caplog):
    path = write(tmp_path / "rndc.key", 'key "a" { algorithm hmac-md5; secret "YQ=="; };',
                 mode=0o644)
    with caplog.at_level(logging.WARNING, logger="rndc_proto"):
        load_config(path)
    assert "readable by every user" in caplog.text and "YQ==" not in caplog.text
    caplog.clear()
    os.chmod(path, 0o640)
    with caplog.at_level(logging.WARNING, logger="rndc_proto"):
        load_config(path)
    assert not caplog.text


# ------------------------------------------------------------------ the command line, beside ISC rndc

def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "rndc_proto.py"), *args],
                          capture_output=True, text=True, timeout=30)


def run_rndc(*args):
    return subprocess.run(["rndc", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("command", [
    ["status"], ["zonestatus", "static.test"], ["zonestatus", "nosuch.test"],
    ["freeze", "static.test"], ["frobnicate"], ["showzone", "static.test"],
])
def test_cli_prints_and_exits_like_isc_rndc(named, command):
    ours = run_cli("-c", named.rndc_conf, *command)
    theirs = run_rndc("-c", named.rndc_conf, *command)
    assert ours.returncode == theirs.returncode
    strip = (lambda s: "\n".join(line for line in s.splitlines()
                                 if not line.startswith("last ")))   # times move on
    assert strip(ours.stdout) == strip(theirs.stdout)
    assert ours.stderr == theirs.stderr


def test_cli_joins_arguments_like_rndc_and_takes_options(named, unique):
    zone = f"{unique}.test"
    file = write_zone(named, zone)
    key = write(os.path.join(named.dir, "k.key"),
                f'key "k" {{ algorithm hmac-md5; secret "{named.secrets["hmac-md5"]}"; }};')
    done = run_cli("-k", key, "-s", "127.0.0.1", "-p", str(named.control_port),
                   "addzone", zone, "{", "type", "primary;", "file", f'"{file}";', "};")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = run_cli("-c", named.rndc_conf, "-y", "rndc-sha1", "delzone", "-clean", zone)
    assert done.returncode == 0
    assert done.stdout == f"zone '{zone}' and associated files will be deleted.\n"


def test_cli_connection_failure_and_bad_config_exit_1(tmp_path):
    key = write(tmp_path / "k.key", 'key "k" { algorithm hmac-md5; secret "YQ=="; };')
    done = run_cli("-k", key, "-p", "1", "status")
    assert done.returncode == 1 and "is named running" in done.stderr
    assert "YQ==" not in done.stderr
    done = run_cli("-c", str(tmp_path / "missing.conf"), "status")
    assert done.returncode == 1 and done.stderr.startswith("rndc: ") and "cannot read" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("-k", key, "-p", "1", " status")
    assert done.returncode == 1 and "whitespace" in done.stderr
