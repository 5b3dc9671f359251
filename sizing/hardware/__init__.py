"""Stage 2, the devices: hwdb records and lookup, and this machine's measurement (``bench``)."""
