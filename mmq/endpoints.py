"""Which base URLs a job may be sent to, and which credential may go with it.

Base URLs come from the operator: the worker's settings (`MMQ_OPENAI_BASE_URL`), a virtual key's
`base_url` (environment or secrets file), a provider's public endpoint, and `MMQ_CUSTOM_HOSTS`, the list
of base URLs a tenant's routing config may name as `custom_host`. Configs come from tenants, so a
`custom_host` off that list is refused at submit and again on the worker, and a credential is only ever
sent to the base URL it was configured with: a tenant who could point a target at their own server
would otherwise receive the worker's API key in the Authorization header.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}

# The providers' own cloud endpoints that fetch image URLs from the internet. Azure's are per customer
# resource (https://<name>.openai.azure.com); OpenAI's default URL is a setting, so it is named here.
_PUBLIC_CLOUD = {
    "openai": ("https://api.openai.com/v1",),
    "azure-openai": (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"),
}


class EndpointError(ValueError):
    """A base URL that is malformed or not allowed; the message names the setting that would allow it."""


def _parts(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path without trailing slash); raises EndpointError for what is not a base URL."""
    try:
        split = urlsplit(url.strip())
        port = split.port
    except ValueError as e:
        raise EndpointError(f"{url!r} is not a valid URL ({e})") from None
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not split.hostname:
        raise EndpointError(f"{url!r} is not an http(s) base URL")
    if split.username or split.password or split.query or split.fragment:
        raise EndpointError(f"{url!r}: a base URL carries no user info, query or fragment")
    return scheme, split.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], split.path.rstrip("/")


def same_endpoint(a: str | None, b: str | None) -> bool:
    """Whether two base URLs name the same place (case of scheme/host, default ports, trailing slash)."""
    if not a or not b:
        return False
    try:
        return _parts(a) == _parts(b)
    except EndpointError:
        return False


def under(url: str, base: str) -> bool:
    """Whether `url` is `base` or below it: same scheme, host and port, and `base`'s path as a prefix at a
    segment boundary (`http://h/v1` covers `http://h/v1/x`, not `http://h/v10`)."""
    try:
        scheme, host, port, path = _parts(url)
        b_scheme, b_host, b_port, b_path = _parts(base)
    except EndpointError:
        return False
    if (scheme, host, port) != (b_scheme, b_host, b_port):
        return False
    return path == b_path or path.startswith(b_path + "/") or not b_path


def check_custom_host(url: str, allowed: Iterable[str], *, target: str = "target") -> None:
    """Raises EndpointError unless `url` is a well-formed base URL under one of the operator's `allowed`."""
    _parts(url)
    if not any(under(url, base) for base in allowed):
        raise EndpointError(
            f"{target}: custom_host {url!r} is not allowed; the operator lists the base URLs configs may "
            "use in MMQ_CUSTOM_HOSTS (or configures a virtual key with that base_url)"
        )


def is_public_cloud(provider: str, base_url: str) -> bool:
    """Whether `base_url` is `provider`'s own cloud endpoint (see _PUBLIC_CLOUD), over https."""
    try:
        scheme, host, _, _ = _parts(base_url)
    except EndpointError:
        return False
    for known in _PUBLIC_CLOUD.get(provider, ()):
        if known.startswith("."):
            if scheme == "https" and host.endswith(known):
                return True
        elif same_endpoint(base_url, known):
            return True
    return False
