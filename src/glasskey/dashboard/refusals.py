"""The dashboard's refusals: requests answered with an error page that says what to do next.

Domain errors (``glasskey.errors.GlasskeyError``) keep their own messages and sources; these are
the refusals of the dashboard itself, about its forms and its session.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the dashboard answers with an error page."""

    status_code = 400
    title = "That did not work"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class CsrfRefused(Refusal):
    """The form did not carry this session's CSRF token (a stale page, or another site's form)."""

    status_code = 403
    title = "This form was refused"


class FormTooLarge(Refusal):
    status_code = 413
    title = "This form is too large"


class NotAForm(Refusal):
    status_code = 415
    title = "This is not a dashboard form"


class PageNotFound(Refusal):
    status_code = 404
    title = "Nothing here"
