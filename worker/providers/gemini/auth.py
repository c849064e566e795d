"""Gemini / Vertex AI: where a target's requests go and how they are authenticated.

AI Studio and Vertex speak the same generateContent / predict bodies; they differ only in the URL and
the credential, which is why that difference lives here and not in the request translation.

Targets
- AI Studio, provider "gemini": `base_url` https://generativelanguage.googleapis.com (a trailing /v1beta
  is tolerated), `Target.api_key` is sent as `x-goog-api-key` (never as `?key=`, which would put the
  secret in URLs and logs).
- Vertex AI, provider "vertex": `base_url` https://{location}-aiplatform.googleapis.com (or
  https://aiplatform.googleapis.com for the "global" location), `Target.api_key` is an OAuth2 access
  token sent as `Authorization: Bearer`; minting or refreshing it is not this adapter's job.
  The project and location travel as two Target headers that the adapter consumes and never forwards:
      x-mmq-vertex-project:  my-project    (required)
      x-mmq-vertex-location: us-central1   (optional if base_url is {location}-aiplatform.googleapis.com)
  e.g. a secrets-file entry {"vertex-prod": {"api_key": "<token>",
  "base_url": "https://us-central1-aiplatform.googleapis.com",
  "headers": {"x-mmq-vertex-project": "acme-ml", "x-mmq-vertex-location": "us-central1"}}}.
  The location is never guessed: it decides where the data is processed.
- Claude on Vertex AI, provider "vertex-anthropic" (worker.providers.vertex_anthropic): the same place,
  token and headers, under `publishers/anthropic/models/` instead of `publishers/google/models/`
  (`endpoint(..., publisher="anthropic")`).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from mmq.errors import ProviderError
from worker.providers.base import Target

AI_STUDIO_BASE_URL = "https://generativelanguage.googleapis.com"
AI_STUDIO_API_VERSION = "v1beta"
VERTEX_API_VERSION = "v1"  # GA; the SDK itself uses v1beta1 (reference §4.1)
VERTEX_PROJECT_HEADER = "x-mmq-vertex-project"
VERTEX_LOCATION_HEADER = "x-mmq-vertex-location"
_VERTEX_HOST = re.compile(r"^(?:(?P<location>[a-z0-9-]+)-)?aiplatform\.googleapis\.com$")
_VERSION_SUFFIX = re.compile(r"/v1(?:beta1?)?$")  # base URLs copied from docs often end in a version


def _base_url(configured: str, default: str) -> str:
    base = (configured or default).rstrip("/")
    return _VERSION_SUFFIX.sub("", base)


def _config_error(message: str, provider: str) -> ProviderError:
    return ProviderError(message, code="target_misconfigured", retryable=False, provider=provider)


def vertex_place(target: Target, provider: str) -> tuple[str, str, str]:
    """(base URL, project, location) for a Vertex target."""
    given = {k.lower(): v for k, v in target.headers.items()}
    project = given.get(VERTEX_PROJECT_HEADER)
    if not project:
        raise _config_error(
            f"Vertex target {target.name!r} needs its project in the {VERTEX_PROJECT_HEADER} header",
            provider,
        )
    location = given.get(VERTEX_LOCATION_HEADER)
    host = urlsplit(target.base_url).hostname or ""
    if not location and (match := _VERTEX_HOST.match(host)):
        location = match["location"] or "global"
    if not location:
        raise _config_error(
            f"Vertex target {target.name!r} needs its location in the {VERTEX_LOCATION_HEADER} header "
            "(or a {location}-aiplatform.googleapis.com base_url)",
            provider,
        )
    default = (
        "https://aiplatform.googleapis.com"
        if location == "global"
        else f"https://{location}-aiplatform.googleapis.com"
    )
    return _base_url(target.base_url, default), project, location


def endpoint(
    target: Target, suffix: str, vertex: bool, provider: str, *, publisher: str = "google"
) -> tuple[str, dict[str, str]]:
    """URL and headers for "{model}:{method}"; the Vertex routing headers are consumed here. `publisher`:
    whose models on Vertex (google: Gemini / Imagen; anthropic: Claude)."""
    headers = {
        k: v
        for k, v in target.headers.items()
        if k.lower() not in (VERTEX_PROJECT_HEADER, VERTEX_LOCATION_HEADER)
    }
    if vertex:
        base, project, location = vertex_place(target, provider)
        url = (
            f"{base}/{VERTEX_API_VERSION}/projects/{quote(project, safe='')}"
            f"/locations/{quote(location, safe='')}/publishers/{publisher}/models/{suffix}"
        )
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
    else:
        url = f"{_base_url(target.base_url, AI_STUDIO_BASE_URL)}/{AI_STUDIO_API_VERSION}/models/{suffix}"
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
    return url, headers
