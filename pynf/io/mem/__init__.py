"""The in-memory NIC: a buffer pool and its kernels."""
