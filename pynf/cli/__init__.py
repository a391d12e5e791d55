"""The command line: `pynf` and the flags of `pynf run`."""
