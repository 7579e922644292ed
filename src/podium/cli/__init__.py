"""The `podium` command line: typer commands over the engine, store and bus.

`podium.cli.app:main` is the console script; `podium --help` lists the commands.
"""
