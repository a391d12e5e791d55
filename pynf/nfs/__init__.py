"""The NF library: one NF per file, the file name is the NF's name."""
