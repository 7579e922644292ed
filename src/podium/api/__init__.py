"""The HTTP API: FastAPI routes over one running engine (`podium.api.app.create_app`).

Nothing is imported here, so the CLI can use the key and role modules without FastAPI.
"""
