"""Packets: the batch of header arrays, parsing and write-back, drop reasons."""
