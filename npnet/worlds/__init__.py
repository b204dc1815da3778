"""Offline worlds: ``tiny`` (random-weight pipelines for plumbing) and ``micro`` (a small trained world)."""
