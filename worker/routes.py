"""From a job's routing config to concrete targets: plan (worker.routing) + virtual keys + adapters.

A job without a config goes to the worker's default target. Everything secret is resolved here, on the
worker, and lives only in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.config import Settings
from worker.credentials import UnknownVirtualKey, VirtualKeys
from worker.errors import InvalidJob
from worker.providers import REGISTRY
from worker.providers.base import Target
from worker.routing import ResolvedTarget, RoutingConfig, RoutingError, effective_params, parse_config, plan


@dataclass(frozen=True)
class Route:
    target: Target
    request: dict[str, Any]
    max_attempts: int  # attempts on this target before moving on
    retry_on: frozenset[int] | None  # None = the default retryable statuses
    fallback_on: frozenset[int] | None  # None = move on after any retryable failure
    timeout_s: float


def check_providers(config: RoutingConfig) -> None:
    """Submit-time check: every provider a config names has an adapter in this build."""
    stack = [config]
    while stack:
        node = stack.pop()
        stack.extend(node.targets or [])
        if node.strategy is None and node.provider and node.provider not in REGISTRY:
            raise ValueError(
                f"provider {node.provider!r} has no adapter in this build (have: {sorted(REGISTRY)})"
            )


def _target(leaf: ResolvedTarget, default: Target, keys: VirtualKeys) -> Target:
    provider = leaf.provider or default.provider
    cred = keys.resolve(leaf.virtual_key) if leaf.virtual_key else None
    base_url = leaf.custom_host or (cred.base_url if cred else None) or default.base_url
    api_key = cred.api_key if cred else default.api_key
    return Target(
        name=leaf.name,
        provider=provider,
        base_url=base_url,
        api_key=api_key,
        headers=dict(cred.headers) if cred else {},
    )


def routes_for(
    config: dict[str, Any] | None,
    request: dict[str, Any],
    metadata: dict[str, Any],
    settings: Settings,
    keys: VirtualKeys,
    default: Target,
) -> list[Route]:
    """`default`: the worker's own target (no config, or where a config leaves base URL/key open)."""
    if config is None:
        return [
            Route(
                default,
                request,
                settings.max_attempts,
                None,
                None,
                settings.request_timeout_s,
            )
        ]
    try:
        leaves = plan(parse_config(config), params=request, metadata=metadata)
        routes = []
        for leaf in leaves:
            retry = leaf.retry
            routes.append(
                Route(
                    target=_target(leaf, default, keys),
                    request=effective_params(request, leaf),
                    # Portkey's `attempts` counts retries; without a retry block each target gets one try
                    max_attempts=(retry.attempts + 1) if retry else 1,
                    retry_on=frozenset(retry.on_status_codes) if retry and retry.on_status_codes else None,
                    fallback_on=leaf.fallback_on,
                    timeout_s=leaf.request_timeout_ms / 1000
                    if leaf.request_timeout_ms
                    else settings.request_timeout_s,
                )
            )
        return routes
    except (RoutingError, UnknownVirtualKey) as e:
        raise InvalidJob(f"routing: {e}", type="routing_error") from None
