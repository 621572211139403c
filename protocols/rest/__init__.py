"""REST door: aiohttp, one OpenAPI path per capability, problem+json errors, SSE progress."""

from .server import create_app

__all__ = ["create_app"]
