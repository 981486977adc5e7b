"""Runs last (by name): no secret of this whole test run reached any log."""

from conftest import TOKEN, Bindcar, NamedServer
from test_auth_metrics import POD_TOKEN


def test_no_secret_in_any_log_of_the_run():
    secrets = {TOKEN, POD_TOKEN, "tok-bindy", "from-a-file"}
    for named in NamedServer.started:
        secrets |= set(named.secrets.values())
    logs = [(b.log_path, b.log_text()) for b in Bindcar.started]
    assert logs, "no bindcar ran in this session"
    lines = 0
    for path, text in logs:
        lines += text.count("\n")
        for secret in secrets:
            assert secret not in text, f"a secret is in {path}"
    assert lines > 100
