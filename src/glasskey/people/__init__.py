"""People and teams: users, their second factor, access tokens, org memberships and roles, org limits,
who holds a key, invitations, offboarding, the append-only audit log and the sign-in throttle.

Every module here is plain domain code over a ``Connection``; the admin API (``admin/people.py``,
``admin/access.py``) and the CLI (``cli/people.py``) are thin layers over it.
"""
