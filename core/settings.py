"""Process settings, from environment variables prefixed METALPLANE_ (pydantic-settings).

The defaults describe the embedded single-machine stack of `metalplane up`; point
METALPLANE_DATABASE_URL and METALPLANE_TEMPORAL_ADDRESS at external services for a cluster.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METALPLANE_", extra="ignore")

    data_dir: Path = Field(default=Path(".metalplane"), description="State of the embedded stack")
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg:// URL; unset means the embedded PostgreSQL in data_dir",
    )
    database_schema: str = Field(default="public", description="Schema holding the inventory")

    temporal_embedded: bool = Field(
        default=True, description="`metalplane up` runs the Temporal dev server at the address"
    )
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL under which booting nodes reach the boot service",
    )

    oidc_issuer: str | None = Field(
        default=None,
        description="OIDC issuer URL (discovery at /.well-known/openid-configuration);"
        " unset: the dev issuer the API serves at <public_url>/dev-issuer",
    )
    jwt_audience: str = "metalplane"
    oidc_roles_claim: str = "roles"
    oidc_tenant_claim: str = "tenant"
    oidc_groups_claim: str = "groups"
    oidc_jwks_refresh_seconds: float = Field(
        default=30.0, description="Least time between JWKS refetches for an unknown key id"
    )

    rate_limit_per_second: float = Field(default=50.0, gt=0, description="per principal")
    rate_limit_burst: int = Field(default=200, ge=1, description="requests above the rate")
    max_request_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies are refused (413)"
    )

    boot_token_secret: SecretStr | None = Field(
        default=None,
        description="Signs phone-home tokens; every API replica needs the same; unset: data_dir's",
    )

    image_store_dir: Path | None = Field(
        default=None, description="Boot artifacts by image; unset means data_dir/images"
    )

    api_database_pool_size: int = Field(
        default=10, ge=1, description="The API's PostgreSQL connections (and as many overflow)"
    )
    bmc_timeout_seconds: float = 20.0
    bmc_max_concurrent_per_host: int = 4
    baremetal_max_concurrent_activities: int = 100
    inventory_max_concurrent_activities: int = 100
    phone_home_timeout_seconds: float = 900.0
    agent_image: str = Field(
        default="lab-sim",
        description="The ramdisk a node's cleaning boots unless the node names its own",
    )
    sku_catalog: Path | None = Field(
        default=None, description="The operator's SKU catalog (YAML); unset: inventory/skus.yaml"
    )
    commission_on_enroll: bool = Field(
        default=True, description="An enrolled node is commissioned before it is available"
    )
    burn_in_memtest_mib: int = Field(
        default=4, ge=0, description="memtester's size in a commissioning's burn-in; 0: none"
    )
    inspect_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="A commissioning boot's inspection and report"
    )
    clean_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="A cleaning boot's wipe and report, from power-on"
    )
    # The console relay (docs/console.md): holds every node's serial console for the API.
    console_relay_url: str = Field(
        default="http://127.0.0.1:8093", description="Where the API reaches the console relay"
    )
    console_relay_host: str = Field(default="127.0.0.1", description="The relay listens here")
    console_relay_port: int = Field(default=8093, description="The relay's listening port")
    console_relay_secret: SecretStr | None = Field(
        default=None, description="Shared by the API and the relay; unset: data_dir's"
    )
    console_log_max_bytes: int = Field(
        default=1_048_576, ge=1024, description="Per boot session; the newest bytes are kept"
    )
    console_logs_kept: int = Field(default=20, ge=1, description="Boot sessions' logs per node")
    console_scan_seconds: float = Field(
        default=10.0, gt=0, description="How often the relay looks for new or removed consoles"
    )
    discovered_nodes_max: int = Field(
        default=10_000, ge=0, description="Unknown MACs kept as discovered nodes (boots are open)"
    )
    # The power-state sync (docs/provisioning.md): the bare-metal worker keeps its schedule.
    power_sync_interval_seconds: float = Field(
        default=60.0, ge=0, description="How often every node's power is read; 0: no sync"
    )
    power_sync_policy: Literal["report", "restore"] = Field(
        default="report", description="On drift: record it, or also restore the recorded state"
    )
    power_sync_unreachable_after: int = Field(
        default=3, ge=1, description="Failed BMC reads in a row that flag a node"
    )
    power_sync_concurrency: int = Field(default=20, ge=1, description="BMC reads in flight")
    power_sync_batch_size: int = Field(default=200, ge=1, description="Nodes per activity")
    boot_session_ttl_seconds: float = 3600.0
    # The head node's report token expires this long after it was issued; every accepted
    # report's answer carries a fresh one.
    cluster_report_token_ttl_seconds: float = Field(default=3600.0, gt=0)

    # Tenant networks: pools (inclusive ranges) the inventory allocates from.
    pool_vlan: tuple[int, int] = (100, 3999)
    vlan_scope: Literal["fabric", "switch"] = Field(
        default="fabric", description="one VLAN per network fabric-wide, or per leaf switch"
    )
    pool_l2vni: tuple[int, int] = (100_000, 199_999)
    pool_l3vni: tuple[int, int] = (200_000, 209_999)
    pool_vrf_table: tuple[int, int] = (1_000, 4_999)
    pool_pkey: tuple[int, int] = (0x0001, 0x7FFE)
    # A tenant's own CIDR (POST /v1/networks `cidr`) must lie inside one of these unicast
    # ranges with a prefix length in the bounds: never a default route, multicast, loopback,
    # link-local or public space. Not the provisioning network's (the operator's).
    tenant_cidr_ranges: tuple[str, ...] = Field(
        default=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"),
        description="IPv4 networks a tenant's own subnet must lie in",
    )
    tenant_cidr_min_prefix: int = Field(default=16, ge=1, le=29, description="widest subnet")
    tenant_cidr_max_prefix: int = Field(
        default=29, ge=1, le=29, description="narrowest subnet (at least 8 addresses)"
    )
    tenant_supernet: str = Field(
        default="10.128.0.0/12", description="tenant subnets are allocated from here"
    )
    tenant_prefix_length: int = Field(default=24, ge=8, le=30)
    network_max_concurrent_activities: int = 50
    switch_timeout_seconds: float = 30.0
    # The anycast gateway's MAC, the same on every routing leaf (Linux + FRR switches; EOS and
    # NX-OS take theirs from their own global configuration). Locally administered.
    anycast_gateway_mac: str = Field(
        default="02:6d:70:00:00:01", pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"
    )

    # Tenant clusters.
    cluster_ready_timeout_seconds: float = Field(
        default=600.0, description="from the nodes active to the head node reporting them all"
    )
    cluster_provision_parallelism: int = Field(default=8, ge=1, le=256)
    cluster_max_replacements: int = Field(
        default=2, ge=0, le=64, description="failed nodes replaced per cluster operation"
    )
    cluster_max_nodes: int = Field(default=256, ge=1, description="nodes per cluster at most")

    # InfiniBand partitions: none, a local OpenSM (partitions.conf + SIGHUP) or NVIDIA UFM.
    ib_backend: Literal["none", "opensm", "ufm"] = "none"
    opensm_partitions_file: Path | None = None
    opensm_pid_file: Path | None = None
    ufm_url: str | None = Field(default=None, description="e.g. https://ufm.example/ufmRest")
    ufm_username: str | None = None
    ufm_password: SecretStr | None = None

    @property
    def images_dir(self) -> Path:
        return self.image_store_dir or self.data_dir / "images"

    @property
    def dev_issuer_enabled(self) -> bool:
        return self.oidc_issuer is None

    @property
    def issuer_url(self) -> str:
        return (self.oidc_issuer or f"{self.public_url.rstrip('/')}/dev-issuer").rstrip("/")

    @property
    def dev_issuer_key_file(self) -> Path:
        return self.data_dir / "dev-issuer" / "private.pem"


@lru_cache
def get_settings() -> Settings:
    return Settings()
