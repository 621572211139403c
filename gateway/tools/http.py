"""HTTP tools: call a configured API with a URL filled from validated parameters, guarded against SSRF.

- **URL**: `{name}` placeholders in the URL template are replaced by the parameter's value, URL-encoded
  with `quote(safe="")` (so `/`, `?`, `#` and `@` in a value cannot change the URL's structure). The
  scheme and host are literal in the config: placeholders may only appear in the path, query or fragment.
- **Headers**: `${NAME}` in a configured header value is taken from the environment once, at start-up;
  a variable that is not set stops the start with a clear error. Configured headers are not sent to
  another origin (scheme, host, port) after a redirect: they often carry credentials.
- **Body**: with `body = "json"` the parameters are sent as a JSON body.
- **SSRF guard**: before every connection the host is resolved and the request is refused (Forbidden)
  if ANY of its addresses is loopback, private, link-local, multicast, reserved, unspecified or
  otherwise not globally routable (IPv4-mapped, 6to4, Teredo and NAT64 IPv6 forms are unwrapped and
  judged by their IPv4 address), unless the tool sets `allow_private`. The connection then goes to
  exactly the vetted addresses (a resolver that knows only them), so a DNS answer that changes between
  the check and the connect (DNS rebinding) is never used; the URL keeps its host name, so the Host
  header and TLS SNI/certificate checks stay right. Only http and https are allowed. Proxies from the
  environment are ignored.
- **Redirects** are followed by hand, up to `max_redirects`, and every target goes through the same
  scheme check and SSRF guard before anything connects to it.
- **Response**: the body is streamed and reading stops at `response_max_bytes` (`truncated: true`); a JSON
  content type is parsed when the body is complete, anything else is text. Any status is a normal
  result; connection failures are UpstreamFailure, running past `timeout_seconds` is Timeout.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import BaseModel, Field
from yarl import URL

from ..config import HttpToolConfig
from ..errors import Forbidden, InvalidParams, ToolFailed, UpstreamFailure
from ..errors import Timeout as TimeoutFailure
from ..execution import ExecutionContext
from ..identity import Role
from ..registry import Capability
from . import split_description
from .command import parse_element
from .schema_model import SchemaParams, model_from_schema

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

READ_CHUNK_BYTES = 65_536
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RESULT_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
    "cache-control",
    "www-authenticate",
)
"""The response headers a result shows."""
ALLOWED_SCHEMES = frozenset({"http", "https"})

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class HttpResult(BaseModel):
    """The API's answer: status, a few headers and the (capped) body."""

    status: int = Field(description="HTTP status code")
    url: str = Field(description="The URL that answered, after redirects")
    headers: dict[str, str] = Field(description=f"Selected response headers: {', '.join(RESULT_HEADERS)}")
    body: Any = Field(description="The parsed JSON value for a JSON content type, else the text")
    truncated: bool = Field(description="The body was cut at response_max_bytes (then it is always text)")


# -- the SSRF guard -----------------------------------------------------------------------------------
def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address; everything internal or special is False."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(embedded):
            return False
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def vet_host(host: str, port: int, allow_private: bool) -> list[IPAddress]:
    """Resolve `host` and return its addresses; Forbidden when any of them is not public (unless allowed)."""
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UpstreamFailure(f"cannot resolve {host!r}: {exc}", data={"host": host}) from None
        addresses = []
        for info in infos:
            address = _ip_literal(str(info[4][0]))
            if address is not None and address not in addresses:
                addresses.append(address)
        if not addresses:
            raise UpstreamFailure(f"{host!r} has no addresses", data={"host": host})
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise Forbidden(
                    f"refusing to connect to {host!r}: it resolves to {address}, which is not a public address "
                    "(set allow_private on the tool to allow loopback, private and link-local targets)",
                    data={"host": host, "address": str(address)},
                )
    return addresses


class PinnedResolver(AbstractResolver):
    """Answers only for hosts vetted by `vet_host`, with exactly the vetted addresses (no second lookup)."""

    def __init__(self) -> None:
        self._vetted: dict[str, list[IPAddress]] = {}

    def pin(self, host: str, addresses: list[IPAddress]) -> None:
        """Allow connections to `host`, at `addresses` only."""
        self._vetted[host] = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The pinned addresses of `host`; an unvetted host is an error, never a lookup."""
        addresses = self._vetted.get(host)
        if addresses is None:
            raise OSError(f"{host!r} was not vetted by the SSRF guard")
        results: list[ResolveResult] = []
        for address in addresses:
            address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": address_family,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not results:
            raise OSError(f"{host!r} has no vetted address of the wanted family")
        return results

    async def close(self) -> None:
        """Nothing to release."""


# -- templates ----------------------------------------------------------------------------------------------
def resolve_env_refs(tool: str, headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Header values with `${NAME}` replaced from `environ`; `ValueError` names a variable that is not set."""
    resolved = {}
    for header, value in headers.items():

        def lookup(match: re.Match[str], header: str = header) -> str:
            name = match.group(1)
            if name not in environ:
                raise ValueError(f"tool {tool!r}: header {header!r} needs the environment variable {name}, not set")
            return environ[name]

        resolved[header] = _ENV_REF.sub(lookup, value)
    return resolved


def _check_url_template(config: HttpToolConfig) -> None:
    template = config.url
    scheme, sep, rest = template.partition("://")
    if not sep or scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError(f"tool {config.name!r}: the URL must start with http:// or https://")
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if "{" in rest[:authority_end] or "}" in rest[:authority_end]:
        raise ValueError(f"tool {config.name!r}: the URL's host must be literal; placeholders only after it")
    properties = config.parameters.get("properties")
    known = set(properties) if isinstance(properties, Mapping) else set()
    for name in parse_element(template).params:
        if name not in known:
            raise ValueError(f"tool {config.name!r}: URL placeholder {{{name}}} names no parameter in its schema")
    if config.body not in (None, "json"):
        raise ValueError(f"tool {config.name!r}: body must be 'json' or absent, not {config.body!r}")


def _url_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return quote(str(value), safe="")
    raise InvalidParams(f"parameter {name!r}: an object or array cannot be placed in the URL", data={"param": name})


def fill_url(template: str, values: Mapping[str, Any]) -> URL:
    """The URL for `values`: every placeholder replaced by its URL-encoded value."""
    pieces = []
    for is_param, text in parse_element(template).tokens:
        if not is_param:
            pieces.append(text)
            continue
        value = values.get(text)
        if value is None:
            raise InvalidParams(f"parameter {text!r} is needed to build the URL", data={"param": text})
        pieces.append(_url_value(text, value))
    return URL("".join(pieces), encoded=True)


# -- the request -------------------------------------------------------------------------------------------
def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.raw_host, url.port)


def _decode(data: bytes, charset: str | None, complete: bool) -> str:
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=complete)


async def _read_result(response: aiohttp.ClientResponse, max_bytes: int) -> HttpResult:
    data = bytearray()
    truncated = False
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        room = max_bytes - len(data)
        if len(chunk) > room:
            data += chunk[:room]
            truncated = True
            break
        data += chunk
    text = _decode(bytes(data), response.charset, not truncated)
    body: Any = text
    content_type = response.content_type.lower()
    if not truncated and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    headers = {name: response.headers[name] for name in RESULT_HEADERS if name in response.headers}
    return HttpResult(status=response.status, url=str(response.url), headers=headers, body=body, truncated=truncated)


async def send(
    config: HttpToolConfig,
    url: URL,
    headers: Mapping[str, str],
    json_body: Any | None,
) -> HttpResult:
    """Send the request, following redirects by hand; every hop's host is vetted before it is connected to."""
    resolver = PinnedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    method: str = config.method
    origin = _origin(url)
    sent_headers: Mapping[str, str] = headers
    timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
    async with aiohttp.ClientSession(connector=connector, trust_env=False, timeout=timeout) as session:
        for _hop in range(config.max_redirects + 1):
            if url.scheme not in ALLOWED_SCHEMES or not url.raw_host:
                raise Forbidden(
                    f"refusing to fetch {url}: only http and https URLs are allowed", data={"url": str(url)}
                )
            host = url.raw_host
            port = url.port or (443 if url.scheme == "https" else 80)
            resolver.pin(host, await vet_host(host, port, config.allow_private))
            async with session.request(
                method, url, headers=dict(sent_headers), json=json_body, allow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status not in REDIRECT_STATUSES or location is None:
                    return await _read_result(response, config.response_max_bytes)
            try:
                url = url.join(URL(location))
            except ValueError:
                raise UpstreamFailure(f"{config.name}: invalid redirect target {location!r}") from None
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, json_body = "GET", None
            if _origin(url) != origin:
                sent_headers = {}
    raise ToolFailed(
        f"{config.name}: more than {config.max_redirects} redirects",
        data={"max_redirects": config.max_redirects, "last_location": str(url)},
    )


# -- registration -------------------------------------------------------------------------------------------
def http_capability(
    config: HttpToolConfig, environ: Mapping[str, str] | None = None
) -> Capability[SchemaParams, HttpResult]:
    """The capability for one `[[tools.http]]` entry; raises `ValueError` for an unusable config.

    Header variables are read from `environ` (default: the process environment) now, once.
    """
    try:
        params_model = model_from_schema(config.name, config.parameters)
    except ValueError as exc:
        raise ValueError(f"tool {config.name!r}: parameters: {exc}") from None
    _check_url_template(config)
    headers = resolve_env_refs(config.name, config.headers, os.environ if environ is None else environ)

    async def call_http_tool(ctx: ExecutionContext, params: SchemaParams) -> HttpResult:
        arguments = params.arguments()
        url = fill_url(config.url, params.arguments_with_defaults())
        ctx.progress("started", 0.0, method=config.method, host=url.host)
        try:
            async with asyncio.timeout(config.timeout_seconds):
                result = await send(config, url, headers, arguments if config.body == "json" else None)
        except TimeoutError:
            raise TimeoutFailure(
                f"{config.name} did not answer within {config.timeout_seconds:g}s",
                data={"timeout_seconds": config.timeout_seconds},
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(f"{config.name}: request failed: {exc}", data={"host": url.host}) from None
        ctx.progress(f"status {result.status}", 100.0, status=result.status)
        return result

    summary, description = split_description(config.description, f"{config.method} {config.url}")
    return Capability(
        name=config.name,
        params_model=params_model,
        result_model=HttpResult,
        handler=call_http_tool,
        summary=summary,
        description=description,
        required_role=Role.MEMBER,
        read_only=config.read_only,
        destructive=not config.read_only,
        idempotent=config.method in ("GET", "PUT", "DELETE"),
        tags=("tool", "http"),
    )
