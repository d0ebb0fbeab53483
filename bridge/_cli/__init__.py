"""Sub-commands of `openspc`; see bridge/cli.py for the protocol each module follows."""
