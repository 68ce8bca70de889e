"""Contract tests: requests and answers taken from the vendors' own documentation, run against
the emulators (one package per system)."""
