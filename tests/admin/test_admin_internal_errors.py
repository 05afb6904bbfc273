"""An exception no handler knew still answers in the brief's shape, never a plain-text 500."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import glasskey.admin.orgs
from admin.test_admin_api import AUTH, assert_error
from glasskey.admin import build_admin_app
from glasskey.services import Services


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/admin/api", app=build_admin_app(services))])
    with TestClient(app, base_url="http://testserver/admin/api", headers=AUTH, raise_server_exceptions=False) as c:
        yield c


def test_a_bug_is_a_json_500_internal_error_from_the_gateway_logged_with_its_traceback(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(conn: object) -> list[object]:
        raise RuntimeError("a value from the database that must not be shown")

    monkeypatch.setattr(glasskey.admin.orgs, "list_orgs", broken)
    with caplog.at_level(logging.ERROR, logger="glasskey.admin"):
        response = client.get("/orgs")
    error = assert_error(response, 500, "gateway")
    assert error["code"] == "internal_error"
    assert "must not be shown" not in response.text
    assert response.headers["content-type"] == "application/json"
    logged = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert logged and logged[0].exc_info is not None
    assert error["request_id"] in logged[0].getMessage()


def test_an_outage_is_a_503_from_the_gateway_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(conn: object) -> list[object]:
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(glasskey.admin.orgs, "list_orgs", down)
    response = client.get("/orgs")
    error = assert_error(response, 503, "gateway")
    assert error["code"] == "gateway_unavailable"
    assert int(response.headers["retry-after"]) >= 1


def test_answers_that_worked_are_untouched(client: TestClient) -> None:
    assert client.get("/orgs").status_code == 200
