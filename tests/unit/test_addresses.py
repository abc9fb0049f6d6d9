"""The class of a network peer's address, with and without the cluster's ranges configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vigil import addresses
from vigil.addresses import AddressClasses, address_class
from vigil.config import ConfigError
from vigil.event import ADDRESS_CLASSES

VIGIL = Path(sys.executable).parent / "vigil"


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link_local"), ("fe80::1%eth0", "link_local"),
    ("224.0.0.251", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.31.0.1", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "private"),
    ("fd00::5", "private"),
    ("198.51.100.20", "reserved"), ("192.0.2.1", "reserved"), ("240.0.0.1", "reserved"),
    ("8.8.8.8", "public"), ("2606:4700::1111", "public"),
    ("", ""), ("not-an-address", ""), ("10.0.0.1:80", ""),
])
def test_generic_classes(address: str, expected: str) -> None:
    found = AddressClasses().classify(address)
    assert found == expected
    assert found in ADDRESS_CLASSES or found == ""


def test_the_clusters_ranges_come_before_the_private_ones() -> None:
    classes = AddressClasses.from_text("10.96.0.0/12, fd00:10:96::/112", "10.244.0.0/16")
    assert [classes.classify(a) for a in ("10.96.0.1", "fd00:10:96::a", "10.244.3.4", "::ffff:10.244.3.4",
                                          "10.1.0.1")] == ["service", "service", "pod", "pod", "private"]


def test_a_bad_range_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"VIGIL_POD_CIDRS: '10\.244\.0\.0/33'"):
        AddressClasses.from_text("", "10.244.0.0/33")


def test_configure_sets_the_ranges_sources_use_and_keeps_them_after_a_bad_one() -> None:
    try:
        addresses.configure("10.96.0.0/12", "")
        assert address_class("10.96.0.10") == "service"
        with pytest.raises(ConfigError):
            addresses.configure("bogus", "")
        assert address_class("10.96.0.10") == "service"
    finally:
        addresses.configure("", "")
    assert address_class("10.96.0.10") == "private"


def test_the_command_refuses_a_bad_range_at_start() -> None:
    result = subprocess.run([str(VIGIL), "detections", "list"], capture_output=True, text=True, timeout=120,
                            env={"VIGIL_SERVICE_CIDRS": "10.96.0.0/40", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "VIGIL_SERVICE_CIDRS" in result.stderr


def test_the_api_servers_service_address_is_the_first_of_the_service_range() -> None:
    classes = AddressClasses.from_text("10.100.0.0/16, fd00:10:96::/112", "")

    assert classes.is_api_service("10.100.0.1") and classes.is_api_service("::ffff:10.100.0.1")
    assert not classes.is_api_service("10.100.0.10") and not classes.is_api_service("10.96.0.1")
    assert not classes.is_api_service("fd00:10:96::1")  # the first range is the one the API server allocates from
    assert not AddressClasses().is_api_service("10.96.0.1") and not classes.is_api_service("not an address")
    try:
        addresses.configure("10.100.0.0/16", "")
        assert addresses.is_api_service_address("10.100.0.1") and not addresses.is_api_service_address("")
    finally:
        addresses.configure("", "")
    assert not addresses.is_api_service_address("10.100.0.1")
