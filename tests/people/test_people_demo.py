"""The demo makes an owner and a member of its org, with passwords printed once and working."""

from __future__ import annotations

from glasskey.demo import demo_settings, format_demo_banner, seed_demo
from glasskey.people.members import role_in
from glasskey.people.users import check_password
from glasskey.services import build_services


def test_the_demo_prints_each_persons_password_once_and_it_signs_in(tmp_path):
    services = build_services(demo_settings(tmp_path / "data", "127.0.0.1", 8787, environ={}))
    try:
        first = seed_demo(services)
        again = seed_demo(services)
        banner = format_demo_banner(first).splitlines()
        assert [(person.email, person.role) for person in first.people] == [
            ("owner@demo.example", "owner"),
            ("member@demo.example", "member"),
        ]
        with services.db.read() as conn:
            for person in first.people:
                assert person.password is not None
                assert f"# {person.role}: {person.email}  password: {person.password}" in banner
                user = check_password(conn, person.email, person.password)
                assert role_in(conn, first.org.id, user.id) == person.role
        assert all(person.password is None for person in again.people)
        assert "not kept" in format_demo_banner(again)
        assert all(not line or line.startswith(("#", "export ", "curl ", "python ", "glasskey ")) for line in banner)
    finally:
        services.db.dispose()
