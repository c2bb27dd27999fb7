"""Clients of the pose service (Python SDK, command-line client, browser page).

They depend on ``protocol`` only, never on the server's internals.
"""
