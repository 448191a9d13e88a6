"""The subcommands of `aftersales`, by what they do; the parser and dispatch are in cli.py."""
