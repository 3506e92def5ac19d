"""Shared services below every package (imports nothing of ours): the command-line error contract, input checks."""
