"""AWS Bedrock: where a target's requests go (endpoint, region) and how they are authenticated.

Kept apart from the request translation because it is the part that depends on the target, not on the
job: the same Converse or InvokeModel body is signed differently per region and credential form.

- `base_url`: https://bedrock-runtime.{region}.amazonaws.com. The adapter's `default_base_url` is that
  template; the `{region}` placeholder (or an empty base_url) is filled from the target's region, so the
  router can hand the template over as is. A simulator or a VPC endpoint is given as a plain base_url.
- Region: Target header `x-mmq-aws-region` (consumed, never forwarded), else the region in a
  bedrock-runtime[-fips].{region}.amazonaws.com base_url, else us-east-1. It is also the SigV4 region.
- Credentials (`Target.api_key`), two forms:
    SigV4 (default):  "ACCESS_KEY_ID:SECRET_ACCESS_KEY" or "ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN"
                      (AWS key ids, secrets and session tokens never contain ':'). Requests are signed
                      with botocore's SigV4Auth, signing name "bedrock", over the exact bytes sent.
    Bedrock API key:  the key itself, with the Target header `x-mmq-aws-auth: bearer` (consumed); it is
                      sent as `Authorization: Bearer <key>`.
  e.g. a secrets-file entry {"bedrock-prod": {"api_key": "AKIA...:wJalr...",
  "headers": {"x-mmq-aws-region": "eu-central-1"}}}.
SigV4 needs botocore, the `bedrock` extra (`pip install 'mmq[bedrock]'`); without it a SigV4 target fails
its jobs with target_misconfigured naming the extra. Bearer API keys need nothing more.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from mmq.errors import ProviderError
from mmq.extras import MissingExtra, require
from worker.providers.base import Target

if TYPE_CHECKING:  # botocore is the `bedrock` extra: imported when a request is signed, not before
    from botocore.credentials import Credentials

DEFAULT_BASE_URL = "https://bedrock-runtime.{region}.amazonaws.com"
DEFAULT_REGION = "us-east-1"
REGION_HEADER = "x-mmq-aws-region"
AUTH_HEADER = "x-mmq-aws-auth"  # "sigv4" (default) | "bearer"
SIGNING_NAME = "bedrock"  # not bedrock-runtime (reference §5.1)
_HOST = re.compile(r"^bedrock-runtime(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")


def _config_error(message: str, provider: str) -> ProviderError:
    return ProviderError(message, code="target_misconfigured", retryable=False, provider=provider)


def region_for(target: Target) -> str:
    given = {k.lower(): v for k, v in target.headers.items()}
    if given.get(REGION_HEADER):
        return given[REGION_HEADER].strip()
    host = urlsplit(target.base_url or "").hostname or ""
    match = _HOST.match(host)
    return match["region"] if match else DEFAULT_REGION


def base_url_for(target: Target) -> str:
    base = (target.base_url or DEFAULT_BASE_URL).rstrip("/")
    return base.replace("{region}", region_for(target))


SIGV4_FEATURE = "AWS SigV4 signing for Bedrock targets (an API key with x-mmq-aws-auth: bearer needs nothing)"


def _botocore(submodule: str):  # type: ignore[no-untyped-def]
    """botocore.`submodule`, or MissingExtra naming the `bedrock` extra."""
    require("botocore", extra="bedrock", feature=SIGV4_FEATURE)
    return require(f"botocore.{submodule}", extra="bedrock", feature=SIGV4_FEATURE)


def parse_credentials(api_key: str) -> Credentials:
    """Target.api_key "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]" -> botocore Credentials.

    Raises ValueError (without echoing the key), MissingExtra without botocore."""
    parts = api_key.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("expected ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]")
    credentials = _botocore("credentials").Credentials
    return credentials(parts[0], parts[1], parts[2] if len(parts) == 3 and parts[2] else None)


def sigv4_headers(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    method: str = "POST",
) -> dict[str, str]:
    """The headers that sign a `method` (POST: the runtime's calls; GET too for the batch control plane)
    of exactly `body` to `url`: Authorization, X-Amz-Date, the payload hash and, for session
    credentials, X-Amz-Security-Token. Every header in `headers` is signed."""
    request = _botocore("awsrequest").AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    _botocore("auth").SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() not in {h.lower() for h in headers}}


def request_headers(
    target: Target, url: str, body: bytes, provider: str, method: str = "POST"
) -> dict[str, str]:
    """The headers for a `method` of exactly `body` to `url`: the target's own headers (less the mmq ones,
    which are consumed) plus a bearer API key or a SigV4 signature. Raises ProviderError
    (target_misconfigured) for missing or malformed credentials."""
    auth = "sigv4"
    headers = {"content-type": "application/json", "accept": "application/json"}
    for key, value in target.headers.items():
        lower = key.lower()
        if lower == AUTH_HEADER:
            auth = value.strip().lower()
        elif lower != REGION_HEADER:
            headers[lower] = value
    if not target.api_key:
        raise _config_error(f"bedrock target {target.name!r} has no credentials (api_key)", provider)
    if auth == "bearer":
        return {**headers, "authorization": f"Bearer {target.api_key}"}
    if auth != "sigv4":
        raise _config_error(f"{AUTH_HEADER} must be 'sigv4' or 'bearer', not {auth!r}", provider)
    try:
        credentials = parse_credentials(target.api_key)
    except MissingExtra as e:  # a deployment without the `bedrock` extra: every job on this target fails
        raise _config_error(f"bedrock target {target.name!r}: {e}", provider) from None
    except ValueError as e:
        raise _config_error(
            f"bedrock target {target.name!r}: api_key {e} (or set {AUTH_HEADER}: bearer for an API key)",
            provider,
        ) from None
    # the Host httpx will send is part of the signature, so sign with exactly that value
    headers["host"] = httpx.URL(url).netloc.decode("ascii")
    return {**headers, **sigv4_headers(url, headers, body, credentials, region_for(target), method)}
