"""``glasskey serve``'s uvicorn options: connection limits and the logging of ``GLASSKEY_LOG_LEVEL``."""

from __future__ import annotations

import pytest

from conftest_helpers import make_settings
from glasskey.cli.base import server_options
from glasskey.settings import SettingsError


def test_uvicorn_is_given_the_connection_limits_and_the_log_level(tmp_path):
    settings = make_settings(tmp_path, connections_max=77, log_level="DEBUG")
    options = server_options(settings)
    assert options["limit_concurrency"] == 77
    assert options["timeout_keep_alive"] == 5
    assert options["access_log"] is False  # an access line would show a Gemini client's ?key=
    assert options["log_level"] == "debug"
    glasskey_logger = options["log_config"]["loggers"]["glasskey"]
    assert glasskey_logger["level"] == "DEBUG" and glasskey_logger["handlers"] == ["glasskey"]


@pytest.mark.parametrize("level", ["trace", "verbose", ""])
def test_a_log_level_outside_the_five_stops_start_up_naming_the_setting(tmp_path, level):
    with pytest.raises(SettingsError, match="GLASSKEY_LOG_LEVEL"):
        make_settings(tmp_path, log_level=level)
