"""The network worker's drivers, chosen from the inventory (switches) and settings (IB)."""

from __future__ import annotations

from activities.network import SwitchOpener
from core.settings import Settings
from drivers.infiniband.base import PartitionManager
from drivers.switch.base import Nos, Switch
from inventory.fabric import SwitchAccess


def open_switch_from_settings(settings: Settings) -> SwitchOpener:
    def open_switch(access: SwitchAccess) -> Switch:
        from drivers.switch.factory import connect  # netmiko loads only where switches are

        return connect(
            Nos(access.nos),
            name=access.id,
            address=access.mgmt_address,
            username=access.username,
            password=access.password,
            asn=access.asn,
            vtep_address=access.vtep_address,
            timeout=settings.switch_timeout_seconds,
            gateway_mac=settings.anycast_gateway_mac,
        )

    return open_switch


def partition_manager_from_settings(settings: Settings) -> PartitionManager | None:
    if settings.ib_backend == "opensm":
        from drivers.infiniband.opensm import OpenSmPartitions

        if settings.opensm_partitions_file is None or settings.opensm_pid_file is None:
            raise SystemExit(
                "METALPLANE_OPENSM_PARTITIONS_FILE and _PID_FILE are needed with ib_backend=opensm"
            )
        return OpenSmPartitions(settings.opensm_partitions_file, pid_file=settings.opensm_pid_file)
    if settings.ib_backend == "ufm":
        from drivers.infiniband.ufm import UfmPartitions

        if not (settings.ufm_url and settings.ufm_username and settings.ufm_password):
            raise SystemExit("METALPLANE_UFM_URL, _USERNAME and _PASSWORD are needed with ufm")
        return UfmPartitions(
            settings.ufm_url, settings.ufm_username, settings.ufm_password.get_secret_value()
        )
    return None
