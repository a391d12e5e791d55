"""DPDK ports and rings (the C shim's DPDK layer)."""
