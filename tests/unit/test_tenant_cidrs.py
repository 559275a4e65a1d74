"""A tenant's own network CIDR: only unicast subnets inside the operator's tenant ranges, with a
prefix length in the configured bounds; never a default route, multicast, loopback, link-local,
broadcast or public space."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.network_schemas import NetworkCreate, ProvisioningNetworkIn
from core.settings import Settings
from inventory.networks import CidrNotAllowed, check_tenant_cidr

SETTINGS = Settings()
DEFAULT_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]


@pytest.mark.parametrize(
    "cidr",
    [
        "0.0.0.0/0",  # everything: a default route through the tenant's VRF
        "0.0.0.0/8",
        "224.0.0.0/4",  # multicast
        "239.1.1.0/24",
        "127.0.0.0/8",  # loopback
        "127.0.0.0/24",
        "169.254.0.0/16",  # link-local
        "169.254.169.0/24",  # where cloud metadata services answer
        "255.255.255.255/32",  # limited broadcast
        "240.0.0.0/4",  # reserved
        "8.8.8.0/24",  # public
        "1.1.1.0/24",
        "192.0.2.0/24",  # documentation (TEST-NET-1), not private
        "172.32.0.0/16",  # just past 172.16.0.0/12
        "100.128.0.0/16",  # just past 100.64.0.0/10
        "11.0.0.0/16",  # just past 10.0.0.0/8
        "192.169.0.0/16",
        "10.0.0.0/7",  # wider than 10/8, reaching into 11/8
    ],
)
def test_cidrs_outside_every_tenant_range_are_refused_naming_the_ranges(cidr: str) -> None:
    with pytest.raises(CidrNotAllowed, match="not inside the tenant ranges") as refused:
        check_tenant_cidr(SETTINGS, cidr)
    assert ", ".join(DEFAULT_RANGES) in str(refused.value)
    assert refused.value.allowed_ranges == DEFAULT_RANGES
    assert refused.value.prefixes == (16, 29)


@pytest.mark.parametrize(
    "cidr",
    [
        "10.50.0.0/24",
        "10.0.0.0/16",
        "10.255.255.248/29",
        "172.16.0.0/16",
        "172.31.255.0/24",
        "192.168.0.0/16",
        "192.168.100.0/24",
        "100.64.0.0/16",
        "100.127.255.0/24",
    ],
)
def test_private_and_shared_unicast_subnets_are_accepted(cidr: str) -> None:
    assert check_tenant_cidr(SETTINGS, cidr) == cidr


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "10.0.0.0/15", "172.16.0.0/12", "10.1.1.0/30"])
def test_prefix_lengths_outside_the_bounds_are_refused(cidr: str) -> None:
    with pytest.raises(CidrNotAllowed, match="a tenant subnet is /16 to /29"):
        check_tenant_cidr(SETTINGS, cidr)


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "not-a-cidr", "fd00::/64", "10.0.0.0/33"])
def test_what_is_not_an_ipv4_network_is_refused(cidr: str) -> None:
    with pytest.raises(CidrNotAllowed, match="not an IPv4 network"):
        check_tenant_cidr(SETTINGS, cidr)


def test_ranges_and_prefix_bounds_are_the_operators() -> None:
    mine = Settings(
        tenant_cidr_ranges=("198.51.100.0/24",), tenant_cidr_min_prefix=25,
        tenant_cidr_max_prefix=28,
    )  # fmt: skip
    assert check_tenant_cidr(mine, "198.51.100.128/25") == "198.51.100.128/25"
    assert check_tenant_cidr(mine, "198.51.100.16/28") == "198.51.100.16/28"
    with pytest.raises(CidrNotAllowed) as refused:
        check_tenant_cidr(mine, "10.0.0.0/24")  # the defaults no longer apply
    assert refused.value.allowed_ranges == ["198.51.100.0/24"]
    with pytest.raises(CidrNotAllowed, match="/25 to /28"):
        check_tenant_cidr(mine, "198.51.100.0/24")
    with pytest.raises(CidrNotAllowed, match="/25 to /28"):
        check_tenant_cidr(mine, "198.51.100.0/29")


def test_ranges_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALPLANE_TENANT_CIDR_RANGES", '["10.20.0.0/16"]')
    settings = Settings()
    assert settings.tenant_cidr_ranges == ("10.20.0.0/16",)
    assert check_tenant_cidr(settings, "10.20.1.0/24") == "10.20.1.0/24"
    with pytest.raises(CidrNotAllowed):
        check_tenant_cidr(settings, "10.21.1.0/24")


def test_the_request_model_checks_only_the_shape_so_the_range_answer_names_the_ranges() -> None:
    # A /32 outside the ranges reaches check_tenant_cidr (422 cidr-not-allowed with the
    # ranges), rather than a generic validation error about its size.
    body = NetworkCreate.model_validate({"name": "lan", "cidr": "255.255.255.255/32"})
    assert body.cidr == "255.255.255.255/32"
    with pytest.raises(CidrNotAllowed, match="not inside the tenant ranges"):
        check_tenant_cidr(SETTINGS, body.cidr)
    for bad in ("10.0.0.1/24", "10.0.0.0/8/8", "fd00::/64", "10.0.0.0/33"):
        with pytest.raises(ValidationError, match="is not an IPv4 network"):
            NetworkCreate.model_validate({"name": "lan", "cidr": bad})


def test_the_provisioning_network_is_not_held_to_the_tenant_ranges() -> None:
    # The operator's own subnet: any IPv4 network of 8 addresses or more, in or out of them.
    for cidr in ("198.51.100.0/24", "192.168.100.0/24", "10.0.0.0/8", "203.0.113.0/29"):
        body = ProvisioningNetworkIn.model_validate({"vlan": 10, "vni": 10010, "cidr": cidr})
        assert body.cidr == cidr
    with pytest.raises(ValidationError, match="at least 8 addresses"):
        ProvisioningNetworkIn.model_validate({"vlan": 10, "vni": 10010, "cidr": "10.0.0.0/30"})
