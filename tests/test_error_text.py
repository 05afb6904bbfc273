"""Error messages echo client values bounded and storable, whoever built the message."""

from __future__ import annotations

import pytest

from glasskey.errors import MESSAGE_MAX_CHARS, ClientError, ModelError, shown, storable_text
from glasskey.pricing.catalog import get_model


def test_a_shown_value_is_cut_short_and_says_how_long_it_was() -> None:
    text = shown("m" * 100_000)
    assert len(text) < 120
    assert text.endswith("… (100000 characters)")


def test_a_shown_value_escapes_nul_and_control_characters() -> None:
    assert shown("z\x00\n") == "z\\x00\\n"
    assert "\x00" not in shown("\x00" * 500)


def test_every_error_message_is_bounded_and_free_of_nul_whoever_built_it() -> None:
    error = ModelError(f"The model `{'z' * 100_000}\x00` does not exist")
    assert len(error.message) == MESSAGE_MAX_CHARS
    assert "\x00" not in ClientError("a\x00b").message
    assert ClientError("a\x00b").message == "a\\u0000b"


def test_a_param_echoing_a_client_path_is_bounded_too() -> None:
    error = ClientError("refused", param="metadata." + "k" * 10_000)
    assert error.param is not None and len(error.param) <= 80


def test_an_unknown_model_is_echoed_short(sqlite_db) -> None:
    with sqlite_db.read() as conn, pytest.raises(ModelError) as caught:
        get_model(conn, "m" * 199)
    assert len(caught.value.message) < 160 and "199 characters" in caught.value.message


def test_an_error_message_is_storable_text_too_whatever_it_was_given() -> None:
    # errors.storable_text is the one rule of storable text (receipts' fields use it too).
    message = ClientError("upstream said \ud800 and \x00").message
    assert message.encode("utf-8") and "\ufffd" in message  # an unpaired surrogate would not encode
    assert message.endswith("\\u0000")  # NUL in a message stays visible, escaped
    stored = storable_text("a\x00\udfffb")
    assert stored.encode("utf-8") and stored.startswith("a\ufffd\ufffd") and stored.endswith("\ufffdb")
