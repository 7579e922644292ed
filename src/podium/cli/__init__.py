"""The `podium` command line: typer commands over the engine, store and bus.

`podium.cli.app:main` is the console script; see DESIGN §4 for the commands.
"""
