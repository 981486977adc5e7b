"""Paging and filtering of the zone list and of a zone's records, against a real named."""

import pytest

from test_bindcar import zone_body
from test_records import KEY, call, records_path, zone  # noqa: F401 (fixture)


def pages(server, path, limit):
    """Every page of ``path`` with ``?limit=``, following ``next``; (pages, ETags)."""
    found, etags, after = [], [], None
    for _ in range(100):
        query = f"limit={limit}" + (f"&after={after}" if after else "")
        status, body, response = server.request(
            "GET", path + ("&" if "?" in path else "?") + query)
        assert status == 200, body
        found.append(body)
        etags.append(response.getheader("ETag"))
        after = body.get("next")
        if after is None:
            return found, etags
    raise AssertionError("more than 100 pages")


def test_the_zone_list_pages_by_name_and_filters(bindcar, unique):
    suffix = f"{unique}.page"
    names = sorted(f"z{i}.{suffix}" for i in range(7))
    for name in names:
        assert bindcar.request("POST", "/api/v1/zones", zone_body(name, key=KEY))[0] == 201
    secondary = f"s.{suffix}"
    assert bindcar.request("POST", "/api/v1/zones",
                           zone_body(secondary, zone_type="secondary"))[0] == 201
    found, _ = pages(bindcar, f"/api/v1/zones?suffix={suffix}&type=primary", 3)
    assert [len(p["zones"]) for p in found] == [3, 3, 1]
    assert [z for p in found for z in p["zones"]] == names
    assert {p["count"] for p in found} == {7}                 # the total, on every page
    assert found[0]["next"] == names[2] and "next" not in found[-1]
    status, body, _ = bindcar.request("GET", f"/api/v1/zones?suffix={suffix}&type=secondary")
    assert body == {"zones": [secondary], "count": 1}
    status, body, _ = bindcar.request("GET", f"/api/v1/zones?suffix=Z3.{suffix.upper()}.")
    assert body == {"zones": [f"z3.{suffix}"], "count": 1}
    status, body, _ = bindcar.request("GET", "/api/v1/zones")  # unchanged without them
    assert set(body) == {"zones", "count"} and set(names) <= set(body["zones"])


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=x", "limit"), ("limit=10001", "limit"),
    ("limit=%C2%B2", "limit"), ("limit=%E2%91%A0", "limit"),
    ("type=master", "type"), ("after=bad..name", "after"), ("suffix=-x-", "suffix"),
    ("page=2", "page")])
def test_a_bad_zone_list_parameter_is_a_400_naming_it(bindcar, query, field):
    status, body, _ = bindcar.request("GET", f"/api/v1/zones?{query}")
    assert status == 400 and body["field"] == field, body


def test_a_zone_s_records_page_by_name_and_type_never_splitting_a_set(bindcar, zone):
    for i in range(5):
        assert call(bindcar, "POST", zone, {"name": f"h{i}", "type": "A",
                                            "value": "192.0.2.1"})[0] == 201
    for value in ("192.0.2.2", "192.0.2.3"):
        assert call(bindcar, "POST", zone, {"name": "h2", "type": "A", "value": value})[0] \
            == 201
    whole = call(bindcar, "GET", zone)[1]["records"]
    found, etags = pages(bindcar, records_path(zone), 2)
    paged = [r for p in found for r in p["records"]]
    key = (lambda r: (r["name"], r["type"], r["value"]))
    assert sorted(paged, key=key) == sorted(whole, key=key)
    assert len(set(etags)) == 1 and len({p["serial"] for p in found}) == 1
    h2 = [p for p in found if any(r["name"] == "h2" for r in p["records"])]
    assert len(h2) == 1 and sum(r["name"] == "h2" for r in h2[0]["records"]) == 3
    assert found[0]["next"].count("/") == 1 and "next" not in found[-1]


def test_a_bad_records_cursor_is_a_400(bindcar, zone):
    status, body = call(bindcar, "GET", zone, query="?after=www")
    assert status == 400 and body["field"] == "after"


def test_a_name_bindcar_would_refuse_pages_through_too(bindcar, named, zone):
    """A record another writer made under a name bindcar's rules refuse (``a\\032b``):
    its cursor is only compared, so the pages go on past it."""
    from test_bindcar import nsupdate
    assert nsupdate(named, zone, f"update add a\\032b.{zone}. 300 TXT odd").returncode == 0
    whole = call(bindcar, "GET", zone)[1]["records"]
    found, _ = pages(bindcar, records_path(zone), 1)
    assert len([r for p in found for r in p["records"]]) == len(whole)
