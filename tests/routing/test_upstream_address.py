"""The upstream address policy: what a route's base URL may point at, and what a name may resolve to."""

from __future__ import annotations

import pytest

from glasskey.routing.upstream_address import UpstreamAddressRefused, check_resolved_address, check_upstream_url

ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",  # link-local, not only the metadata address itself
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./computeMetadata/v1/",
    "http://METADATA/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",  # octal
    "http://100.100.100.200/",
    "http://0.0.0.0:5432/",
    "http://[::]:6379/",
    "http://224.0.0.1/",
    "https://user:s3cr3t-pw@api.openai.com/v1",
    "https://user@api.openai.com/v1",
    "https://api.openai.com@169.254.169.254/v1",
    "ftp://api.openai.com/",
    "file:///etc/passwd",
    "http://api.openai.com\\@evil.example/",
    "http://api openai.com/",
    "http:///v1",
    "http://host:notaport/",
]
PRIVATE = [
    "http://127.0.0.1:5432/",
    "http://127.1/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://localhost:6379/",
    "http://db.localhost/",
    "http://[::1]:8000/v1",
    "http://10.1.2.3/v1",
    "http://172.16.0.9/v1",
    "http://192.168.1.20:11434/v1",
    "http://100.64.1.1/",
    "http://[fd12:3456::1]/",
    "http://llm.internal/v1",
    "http://gpu-box.local:8000/v1",
]
PUBLIC = [
    "https://api.openai.com/v1",
    "https://api.anthropic.com",
    "https://generativelanguage.googleapis.com",
    "http://8.8.8.8:8080/v1",
    "https://[2606:4700:4700::1111]/v1",
    "https://openrouter.ai/api/v1",
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_link_local_metadata_userinfo_and_odd_urls_are_always_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(UpstreamAddressRefused) as caught:
        check_upstream_url(url, allow_private)
    assert caught.value.param == "base_url"
    assert caught.value.source == "client" and caught.value.status_code == 400
    assert "s3cr3t-pw" not in caught.value.message  # a password in the URL is never echoed back


@pytest.mark.parametrize("url", PRIVATE)
def test_loopback_and_private_addresses_need_the_setting(url: str) -> None:
    with pytest.raises(UpstreamAddressRefused, match="allow_private_upstreams"):
        check_upstream_url(url, allow_private=False)
    check_upstream_url(url, allow_private=True)


@pytest.mark.parametrize("url", PUBLIC)
def test_public_hosts_are_allowed(url: str) -> None:
    check_upstream_url(url, allow_private=False)


@pytest.mark.parametrize(
    "ip",
    ["169.254.169.254", "169.254.0.1", "fe80::abcd", "fe80::1%eth0", "fd00:ec2::254", "::ffff:a9fe:a9fe", "0.0.0.0"],
)
def test_a_name_resolving_to_link_local_or_metadata_is_refused_at_connect_time(ip: str) -> None:
    with pytest.raises(UpstreamAddressRefused):
        check_resolved_address(ip, allow_private=True)


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "10.0.0.1", "192.168.0.10", "::ffff:127.0.0.1", "fc00::5"])
def test_a_name_resolving_to_a_private_address_needs_the_setting(ip: str) -> None:
    with pytest.raises(UpstreamAddressRefused):
        check_resolved_address(ip, allow_private=False)
    check_resolved_address(ip, allow_private=True)


@pytest.mark.parametrize("ip", ["8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_pass_at_connect_time(ip: str) -> None:
    check_resolved_address(ip, allow_private=False)
