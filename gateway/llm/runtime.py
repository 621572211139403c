"""The lazy litellm import: never on the start-up path, never per request on the event loop.

`import litellm` takes seconds and, unless told to use its bundled price map, downloads one from the
internet. So the gateway imports it at most once, in a worker thread, with the offline price map, its
telemetry and logging callbacks emptied, and its httpx transport (whose clients survive event-loop
changes and close cleanly). `gateway serve` with no `[[models]]` never imports it at all.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import warnings
from typing import Any

log = logging.getLogger("gateway.llm")

_lock = threading.Lock()
_module: Any = None

# Set before the import: litellm reads these while importing.
_ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled price map; no download at import
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "DISABLE_HF_TOKENIZER_DOWNLOAD": "True",
}


def loaded() -> bool:
    """True once litellm is imported and configured."""
    return _module is not None


def module_if_loaded() -> Any:
    """The configured litellm module, or None when it has not been imported yet."""
    return _module


def load_litellm() -> Any:
    """Import and configure litellm (blocking, seconds the first time); later calls return the module."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            for key, value in _ENVIRONMENT.items():
                os.environ.setdefault(key, value)
            module = importlib.import_module("litellm")
            _configure(module)
            _module = module
    return _module


def _configure(litellm: Any) -> None:
    """Switch off everything that would reach the network or chatter on stderr."""
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.telemetry = False
    litellm.drop_params = True  # a provider that lacks a parameter gets the request without it
    litellm.disable_aiohttp_transport = True  # httpx: no sessions left unclosed across event loops
    litellm.disable_hf_tokenizer_download = True
    litellm.turn_off_message_logging = True
    for name in (
        "callbacks",
        "input_callback",
        "success_callback",
        "failure_callback",
        "service_callback",
        "audit_log_callbacks",
        "_async_input_callback",
        "_async_success_callback",
        "_async_failure_callback",
    ):
        if isinstance(getattr(litellm, name, None), list):
            setattr(litellm, name, [])
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Its own pydantic deprecations are litellm's business, not the gateway operator's.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litellm(\.|$)")
    warnings.filterwarnings("ignore", message=r".*ReadOnly.*qualifier", category=UserWarning)


async def litellm_module() -> Any:
    """The configured litellm module, imported in a worker thread if it is not loaded yet."""
    if _module is not None:
        return _module
    return await asyncio.to_thread(load_litellm)


async def warm() -> None:
    """Import litellm in the background so the first model call does not pay for it; never raises."""
    try:
        await litellm_module()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("importing litellm failed; model calls will fail until it imports")
