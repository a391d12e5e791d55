"""I/O backends: `mem` (an emulated multi-queue NIC over a buffer pool) and
`dpdk` (ethdev ports through the shim). Both hand a stage bursts of
(offset, length) pairs into one packet memory, so the stage cannot tell them
apart."""
