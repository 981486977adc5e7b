"""README tells the truth: its tables match the code."""

import os
import re

import bindcar
from conftest import ROOT

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def table_after(heading):
    """The cells of the first table in the section under ``heading``."""
    section = re.split(r"\n#+ ", README.split(heading, 1)[1], maxsplit=1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


def test_every_setting_is_in_readme_with_its_default():
    rows = {row[0].strip("`"): row[1] for row in table_after("## Configuration")}
    assert set(rows) == {name for name, *_ in bindcar.SETTINGS}
    for name, default, _, _ in bindcar.SETTINGS:
        if default is not None:
            assert rows[name] == f"`{default}`", name
        elif name != "RNDC_CONF":
            assert rows[name] == "—", name


def test_every_route_is_in_readme():
    documented = set()
    for row in table_after("## Endpoints"):
        first, *more = re.findall(r"`([^`]+)`", row[0])
        method, path = first.split(" ")
        for path in [path, *more]:
            documented.add((method, path))
    routes = {(method, template) for method, template, *_ in bindcar.App.ROUTES}
    assert documented == routes


def test_readme_keeps_its_two_commands():
    assert "make demo" in README and "make test" in README
