"""One TLS context for every httpx client the library creates.

Each ``httpx.AsyncClient()`` builds its own ``SSLContext`` and loads the CA bundle into it, about
20 ms of CPU, even for plain-HTTP agents. Sharing one context makes a discovery cache or a
ServiceClient cheap to create.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
