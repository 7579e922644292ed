"""The HTTP API (DESIGN §1 `api`): FastAPI routes over one running engine.

`create_app(engine)` builds the app; `podium serve` runs it with uvicorn on the engine's loop.
"""

from __future__ import annotations

from podium.api.app import create_app

__all__ = ["create_app"]
