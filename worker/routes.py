"""From a job's routing config to concrete targets: plan (mmq.routing) + virtual keys + adapters.

A job without a config goes to the worker's default target. Everything secret is resolved here, on the
worker, and lives only in memory.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from typing import Any

from mmq.catalog import can_do
from mmq.endpoints import EndpointError, check_custom_host, is_public_cloud, same_endpoint
from mmq.errors import InvalidJob
from mmq.request_models import Kind
from mmq.routing import (
    RateLimit,
    ResolvedTarget,
    RoutingConfig,
    RoutingError,
    all_leaves,
    effective_params,
    parse_config,
    plan,
)
from mmq.settings import Settings
from worker.credentials import UnknownVirtualKey, VirtualKeys
from worker.providers import REGISTRY
from worker.providers.base import Target


@dataclass(frozen=True)
class Route:
    target: Target
    request: dict[str, Any]
    max_attempts: int  # attempts on this target before moving on
    retry_on: frozenset[int] | None  # None = the default retryable statuses
    fallback_on: frozenset[int] | None  # None = move on after any retryable failure
    timeout_s: float
    # provider + virtual key + model: the unit of rate limits, 429 cooldowns and circuit breaking
    bucket: str = ""
    rate_limit: RateLimit | None = None
    prices: dict[str, Any] | None = None  # the target's own prices over the worker's book (a config's)
    batch_queue_tokens: int | None = None  # its provider batches' enqueued-token limit (a config's)


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str) -> RoutingConfig:
    return parse_config(text)


def parsed_config(config: dict[str, Any]) -> RoutingConfig:
    """A batch's jobs all carry the same config: validate it once per worker, not once per job.
    (Callers never mutate the parsed model; planning copies what it hands out.)"""
    return _parse_cached(json.dumps(config, sort_keys=True, separators=(",", ":")))


def bucket_id(provider: str, virtual_key: str | None, request: dict[str, Any]) -> str:
    return f"{provider}:{virtual_key or '-'}:{request.get('model') or '-'}"


def has_loadbalance(config: dict[str, Any] | None) -> bool:
    stack = [config] if config else []
    while stack:
        node = stack.pop()
        if (node.get("strategy") or {}).get("mode") == "loadbalance":
            return True
        stack.extend(t for t in node.get("targets") or () if isinstance(t, dict))
    return False


def candidate_buckets(config: dict[str, Any], request: dict[str, Any], default: Target) -> dict[str, str]:
    """Leaf name → bucket for every target the config could pick."""
    try:
        leaves = all_leaves(parsed_config(config))
    except (RoutingError, ValueError):
        return {}
    return {
        leaf.name: bucket_id(
            leaf.provider or default.provider, leaf.virtual_key, effective_params(request, leaf)
        )
        for leaf in leaves
    }


def _target(leaf: ResolvedTarget, default: Target, keys: VirtualKeys, custom_hosts: list[str]) -> Target:
    """The concrete target for a leaf. A credential goes only to the base URL it was configured with
    (mmq.endpoints): the worker's key to MMQ_OPENAI_BASE_URL, a virtual key's to its own base_url (or,
    without one, to its provider's public endpoint); a tenant's custom_host must be on the operator's list
    and never receives a key configured for somewhere else."""
    provider = leaf.provider or default.provider
    cred = keys.resolve(leaf.virtual_key) if leaf.virtual_key else None
    same_as_default = provider == default.provider
    # another provider's public endpoint, never the worker's OpenAI URL (nor its key, below)
    own_url = (
        default.base_url if same_as_default else getattr(REGISTRY.get(provider), "default_base_url", None)
    )
    if cred:
        api_key, headers, key_url = cred.api_key, dict(cred.headers), cred.base_url or own_url
    else:
        api_key, headers, key_url = (default.api_key if same_as_default else None), {}, own_url
    base_url = key_url
    if leaf.custom_host and not same_endpoint(leaf.custom_host, key_url):
        check_custom_host(leaf.custom_host, custom_hosts, target=f"target {leaf.name!r}")
        if cred:
            raise EndpointError(
                f"target {leaf.name!r}: virtual key {leaf.virtual_key!r} is configured for "
                f"{key_url or 'no base URL'} and is never sent to custom_host {leaf.custom_host!r}"
            )
        base_url, api_key, headers = leaf.custom_host, None, {}
    if not base_url:
        raise RoutingError(
            f"target {leaf.name!r}: provider {provider!r} needs a custom_host or a virtual key"
        )
    return Target(
        name=leaf.name,
        provider=provider,
        base_url=base_url,
        api_key=api_key,
        headers=headers,
    )


def fetches_urls_itself(target: Target) -> bool:
    """Whether `target` is a provider's public cloud endpoint, which may be handed image URLs to fetch
    itself. A custom or self-hosted base URL (vLLM, Ollama, a proxy on the operator's network) fetches from
    inside that network, so a tenant's `http://127.0.0.1:6379/` would reach it: the worker fetches for it,
    through the SSRF guard."""
    return _public_endpoint(target.provider, target.base_url)


@functools.lru_cache(maxsize=256)  # per job otherwise: a handful of targets, parsed once each
def _public_endpoint(provider: str, base_url: str) -> bool:
    own = getattr(REGISTRY.get(provider), "default_base_url", None)
    return same_endpoint(base_url, own) or is_public_cloud(provider, base_url)


def routes_for(
    config: dict[str, Any] | None,
    request: dict[str, Any],
    metadata: dict[str, Any],
    settings: Settings,
    keys: VirtualKeys,
    default: Target,
    *,
    rng: random.Random | None = None,
    unhealthy: frozenset[str] | set[str] = frozenset(),
    kind: Kind | None = None,
) -> list[Route]:
    """`default`: the worker's own target (no config, or where a config leaves base URL/key open).
    `unhealthy`: buckets whose circuit is open; loadbalance picks among the others while any is left.
    `kind`: targets whose provider cannot do this kind of job are left out of the plan."""
    if config is None:
        return [
            Route(
                default,
                request,
                settings.max_attempts,
                None,
                None,
                settings.request_timeout_s,
                bucket=bucket_id(default.provider, None, request),
                rate_limit=RateLimit.model_validate(settings.rate_limit) if settings.rate_limit else None,
            )
        ]
    try:
        parsed = parsed_config(config)
        healthy = None
        if unhealthy:
            buckets = candidate_buckets(config, request, default)
            healthy = lambda name: buckets.get(name) not in unhealthy  # noqa: E731
        try:
            leaves = plan(parsed, params=request, metadata=metadata, rng=rng, healthy=healthy)
        except RoutingError:
            if healthy is None:
                raise
            # every choice is sick: plan as if healthy; the breaker then defers the job until a probe
            leaves = plan(parsed, params=request, metadata=metadata, rng=rng)
        if kind is not None:
            able = [leaf for leaf in leaves if can_do(leaf.provider or default.provider, kind)]
            if not able:
                names = ", ".join(sorted({leaf.provider or default.provider for leaf in leaves}))
                raise RoutingError(f"no target this job was routed to can do {kind.value} jobs ({names})")
            leaves = able
        routes = []
        for n, leaf in enumerate(leaves):
            retry = leaf.retry
            last = n == len(leaves) - 1
            params = effective_params(request, leaf)
            target = _target(leaf, default, keys, settings.custom_hosts)
            routes.append(
                Route(
                    target=target,
                    request=params,
                    bucket=bucket_id(target.provider, leaf.virtual_key, params),
                    rate_limit=leaf.rate_limit,
                    prices=leaf.prices,
                    batch_queue_tokens=leaf.batch_queue_tokens,
                    # Portkey's `attempts` counts retries. Without a retry block a target gets one try
                    # while another target is left to fall back to; the last one gets the worker's
                    # retry policy, because an unattended batch must outlast a 429 or a passing 503.
                    max_attempts=(retry.attempts + 1) if retry else settings.max_attempts if last else 1,
                    retry_on=frozenset(retry.on_status_codes) if retry and retry.on_status_codes else None,
                    fallback_on=leaf.fallback_on,
                    timeout_s=leaf.request_timeout_ms / 1000
                    if leaf.request_timeout_ms
                    else settings.request_timeout_s,
                )
            )
        return routes
    except (RoutingError, UnknownVirtualKey, EndpointError) as e:
        raise InvalidJob(f"routing: {e}", type="routing_error") from None
