"""Azure OpenAI: the OpenAI wire format at a customer's own resource, addressed by deployment.

Bodies, multipart uploads and answers are OpenAI's (plus Azure extras such as `prompt_filter_results`,
which pass through untouched), so this adapter reuses worker.providers.openai (its `translate`, and the
shared send path) and only changes where a request goes, how it authenticates, how a few errors read
(`error`) and where the request id is (`parse`). Reference: ../shared/reference/providers.md §2.

Targets (provider "azure-openai"; there is no public default endpoint, so the route needs a custom_host
or a virtual key with a base_url):
- `base_url` is the resource, e.g. https://my-res.openai.azure.com (a trailing /openai is tolerated).
- Deployments form (default): POST {base}/openai/deployments/{deployment}/{op}?api-version={version}.
  Azure routes by deployment name, and the deployment is the request's `model`: set
  override_params.model (or the job's model) to the deployment name, e.g. "gpt-4o-prod". `model` also
  stays in the body, as the OpenAI SDK's AzureOpenAI client sends it (Azure ignores it there).
  A base_url that already ends in /openai/deployments/{name} pins that deployment.
- v1 form (GA since Aug 2025): POST {base}/openai/v1/{op}, no api-version, `model` = deployment name in
  the body. Chosen when base_url ends with /openai/v1 or the api-version header below is "v1".
- Headers the adapter consumes and never forwards:
      x-mmq-azure-api-version: 2024-10-21 | 2025-04-01-preview | v1   (default: API_VERSIONS below)
      x-mmq-azure-auth:        api-key (default) | bearer
  `Target.api_key` goes out as `api-key: <key>`, or as `Authorization: Bearer <token>` for a Microsoft
  Entra token when x-mmq-azure-auth is "bearer" (minting/refreshing the token is not this adapter's job).
  e.g. a secrets-file entry {"azure-eu": {"api_key": "<key>", "base_url": "https://acme-eu.openai.azure.com",
  "headers": {"x-mmq-azure-api-version": "2025-04-01-preview"}}}.

Errors: a prompt blocked by the content filter is HTTP 400 code "content_filter" (not retryable; the
message names the filtered categories); a 429 is retried after `retry-after-ms` / `retry-after`, or
after the "Please retry after N seconds" in its message when no header came.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mmq.errors import InvalidJob, ProviderError
from mmq.request_models import Kind
from worker.providers.base import ProviderResponse, Target
from worker.providers.openai import PATHS, OpenAIAdapter
from worker.providers.openai import error_from_response as openai_error

API_VERSION_HEADER = "x-mmq-azure-api-version"
AUTH_HEADER = "x-mmq-azure-auth"
_OWN_HEADERS = frozenset({API_VERSION_HEADER, AUTH_HEADER})
V1 = "v1"
# Default api-version of the deployments form, per kind. 2024-10-21 is the newest dated GA version and
# serves all five operations (Azure/azure-rest-api-specs inference/stable/2024-10-21). Newer models can
# need a preview version (gpt-image-1: 2025-04-01-preview, UNVERIFIED here); set the header on that
# target rather than changing a default every other deployment relies on.
API_VERSIONS: dict[Kind, str] = {
    Kind.chat: "2024-10-21",
    Kind.image: "2024-10-21",
    Kind.speech: "2024-10-21",
    Kind.transcription: "2024-10-21",
    Kind.translation: "2024-10-21",
}
AUTH_MODES = ("api-key", "bearer")
# "contentFilter" is how DALL-E deployments have spelled it (UNVERIFIED); both mean a blocked prompt.
CONTENT_FILTER_CODES = frozenset({"content_filter", "contentFilter"})
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)
_DEPLOYMENT_IN_BASE = re.compile(r"/openai/deployments/[^/]+$")


def _filtered_categories(error: Mapping[str, Any]) -> list[str]:
    inner = error.get("innererror") or error.get("inner_error")
    if not isinstance(inner, Mapping):
        return []
    results = inner.get("content_filter_result") or inner.get("content_filter_results")
    if not isinstance(results, Mapping):
        return []
    return sorted(
        name for name, verdict in results.items() if isinstance(verdict, Mapping) and verdict.get("filtered")
    )


def error_from_response(resp: httpx.Response, provider: str) -> ProviderError:
    """OpenAI's error mapping plus Azure's content filter and 429 wording."""
    err = openai_error(resp, provider)
    try:
        body = resp.json()
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        error = None
    if err.code in CONTENT_FILTER_CODES:
        # a filtered prompt fails the same way every time: never retry it
        err.code, err.retryable = "content_filter", False
        categories = _filtered_categories(error) if isinstance(error, Mapping) else []
        if categories:
            err.message += f" [filtered: {', '.join(categories)}]"
    if err.status == 429 and err.retry_after_s is None and (match := _RETRY_IN_MESSAGE.search(err.message)):
        err.retry_after_s = float(match[1])
    return err


class AzureOpenAIAdapter(OpenAIAdapter):
    kinds = frozenset(PATHS)
    # Azure endpoints are per customer resource: without a custom_host or a virtual key base_url the
    # router refuses the target instead of guessing one.
    default_base_url: str | None = None

    def __init__(self, name: str = "azure-openai") -> None:
        super().__init__(name)

    def _config_error(self, message: str) -> ProviderError:
        return ProviderError(message, code="target_misconfigured", retryable=False, provider=self.name)

    def _options(self, target: Target) -> tuple[str | None, str]:
        """(api-version or None for the default, auth mode) from the target's mmq headers."""
        given = {k.lower(): v.strip() for k, v in target.headers.items()}
        return given.get(API_VERSION_HEADER) or None, (given.get(AUTH_HEADER) or "api-key").lower()

    def _url(self, target: Target, kind: Kind, request: dict[str, Any]) -> str:
        base = (target.base_url or "").rstrip("/")
        if not urlsplit(base).netloc:
            raise self._config_error(
                f"Azure OpenAI target {target.name!r} needs the resource URL as its base_url "
                "(e.g. https://my-resource.openai.azure.com)"
            )
        version, _ = self._options(target)
        if base.endswith("/openai/v1") or version == V1:
            if version not in (None, V1) or _DEPLOYMENT_IN_BASE.search(base):
                raise self._config_error(
                    f"Azure OpenAI target {target.name!r}: the /openai/v1 API takes neither a dated "
                    f"api-version ({API_VERSION_HEADER}: {version}) nor a deployment in the base_url"
                )
            root = base.removesuffix("/openai/v1").removesuffix("/openai")
            return f"{root}/openai/v1{PATHS[kind]}"
        if _DEPLOYMENT_IN_BASE.search(base):
            deployment_url = base  # the SDK's convention: a base_url that names the deployment wins
        else:
            model = request.get("model")
            if not isinstance(model, str) or not model:
                raise InvalidJob(
                    "azure-openai routes by deployment: set `model` (e.g. via override_params.model) "
                    "to the Azure deployment name"
                )
            deployment_url = f"{base.removesuffix('/openai')}/openai/deployments/{quote(model, safe='')}"
        api_version = version or API_VERSIONS[kind]
        return f"{deployment_url}{PATHS[kind]}?api-version={quote(api_version, safe='')}"

    def _headers(self, target: Target) -> dict[str, str]:
        _, auth = self._options(target)
        if auth not in AUTH_MODES:
            raise self._config_error(
                f"Azure OpenAI target {target.name!r}: {AUTH_HEADER} must be one of "
                f"{', '.join(AUTH_MODES)}, not {auth!r}"
            )
        headers = {k: v for k, v in target.headers.items() if k.lower() not in _OWN_HEADERS}
        if target.api_key:
            if auth == "bearer":  # a Microsoft Entra access token
                headers["authorization"] = f"Bearer {target.api_key}"
            else:
                headers["api-key"] = target.api_key
        return headers

    def error(self, response: httpx.Response) -> ProviderError:
        return error_from_response(response, self.name)

    def parse(
        self, kind: Kind, request: dict[str, Any], response: httpx.Response, body: Any
    ) -> ProviderResponse:
        out = super().parse(kind, request, response, body)
        # Azure's API Management front end always stamps apim-request-id; x-request-id may be absent
        out.request_id = out.request_id or response.headers.get("apim-request-id")
        return out
