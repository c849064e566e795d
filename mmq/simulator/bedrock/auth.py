"""The Bedrock dialect's auth: the guard's key reader, verifying SigV4 for real (reference §5.1).

- SigV4 (`Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/bedrock/aws4_request,
  SignedHeaders=..., Signature=...` + `X-Amz-Date`). The signature is really verified with botocore
  against the fixed test credentials SIM_CREDENTIALS (AKIDSIM / simsecret): an unknown key id gives 403
  UnrecognizedClientException, a wrong signature 403 InvalidSignatureException, a payload whose
  `x-amz-content-sha256` disagrees with the body 400 XAmzContentSHA256Mismatch, a request more than
  5 minutes off 403 InvalidSignatureException (expired), a scope other than `bedrock` 403.
  The canonical URI is the decoded path encoded twice, as the SigV4 spec says, so a transport that sends
  `:` where botocore signed `%3A` still verifies.
- Or a Bedrock API key as `Authorization: Bearer <key>`, any value.
The key id (or API key) becomes the guard's rate-limit identity.
botocore is the `bedrock` extra, imported when a signature is checked: without it a SigV4 request gets
500 naming the extra (`pip install 'mmq[bedrock]'`); bearer keys and every other dialect need nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from starlette.requests import Request

from mmq.simulator.bedrock.errors import BedrockError, _forbidden

SIM_CREDENTIALS: dict[str, str] = {"AKIDSIM": "simsecret"}  # access key id -> secret
SIGNING_NAME = "bedrock"
MAX_SKEW_S = 300
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def canonical_path(raw_path: str) -> str:
    """The path as once URI-encoded per segment, whatever encoding the client's transport used."""
    return "/".join(quote(unquote(segment), safe="~") for segment in raw_path.split("/"))


def verify_sigv4(request: Request, body: bytes, now: float | None = None) -> str:
    """Checks a SigV4 Authorization header against SIM_CREDENTIALS; returns the access key id."""
    match = _AUTH.match(request.headers.get("authorization", "").strip())
    if not match:
        raise _forbidden(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters "
            "(AWS4-HMAC-SHA256). (mmq simulator)",
        )
    scope = match["credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _forbidden("IncompleteSignatureException", f"Credential {match['credential']!r} is malformed.")
    key_id, day, region, service, _ = scope
    if service != SIGNING_NAME:
        raise _forbidden(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
        )
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _forbidden(
            "IncompleteSignatureException", "Authorization requires a valid X-Amz-Date header."
        ) from None
    if day != amz_date[:8]:
        raise _forbidden("InvalidSignatureException", "Credential date does not match X-Amz-Date.")
    current = time.time() if now is None else now
    if abs(current - signed_at.timestamp()) > MAX_SKEW_S:
        raise _forbidden(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier or later than the allowed 5 minute window.",
        )
    declared_hash = request.headers.get("x-amz-content-sha256")
    if declared_hash is not None and declared_hash != hashlib.sha256(body).hexdigest():
        raise BedrockError(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    secret = SIM_CREDENTIALS.get(key_id)
    if secret is None:
        raise _forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid. (mmq simulator: sign with "
            + ", ".join(f"{k}:{v}" for k, v in SIM_CREDENTIALS.items())
            + ")",
        )
    names = match["signed"].split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise _forbidden("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.")
    headers: dict[str, str] = {}
    for name in names:
        if name not in request.headers:
            raise _forbidden(
                "InvalidSignatureException", f"Signed header {name!r} is missing from the request."
            )
        headers[name] = request.headers[name]
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = f"http://{headers['host']}{canonical_path(raw_path.decode('latin-1'))}"
    if request.url.query:
        url += "?" + request.url.query
    try:  # the `bedrock` extra (the simulator imports nothing of the engine, so no mmq.extras here)
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ModuleNotFoundError:
        raise BedrockError(
            500,
            "InternalServerException",
            "the mmq simulator verifies SigV4 with botocore: install mmq[bedrock] "
            "(pip install 'mmq[bedrock]'), or send a Bedrock API key as Authorization: Bearer",
        ) from None
    aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws.context["timestamp"] = amz_date
    token = request.headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return key_id


async def authenticate(request: Request) -> str:
    """The guard's key reader: a SigV4 access key id (verified) or a Bedrock API key (any). Starlette
    caches the body, so the handler reads the same bytes again."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if not auth:
        raise _forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
    return verify_sigv4(request, await request.body())
