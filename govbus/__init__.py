"""The `govbus` command: the applications (discovery, manager, edge) assembled into processes.

It sits on top of everything else: `bus` (the library), `schemas` and the applications; nothing
imports it back. `govbus.cli.main` is the console script; `python -m govbus` runs it too.
"""
