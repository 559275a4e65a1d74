"""The hardware lab: simulated GPU servers behind BMC simulators speaking IPMI and Redfish."""
