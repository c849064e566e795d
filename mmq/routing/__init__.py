"""Routing configs (Portkey's gateway config schema): `schema` parses and checks them, `plan` turns a
config plus one request into the targets to try. Pure logic, no I/O; the worker wires it in."""

from mmq.routing.plan import ResolvedTarget, all_leaves, effective_params, plan
from mmq.routing.schema import (
    Cache,
    Condition,
    RateLimit,
    Retry,
    RoutingConfig,
    RoutingError,
    Strategy,
    as_number,
    check_conditions,
    check_targets,
    parse_config,
)

__all__ = [
    "Cache",
    "Condition",
    "RateLimit",
    "ResolvedTarget",
    "Retry",
    "RoutingConfig",
    "RoutingError",
    "Strategy",
    "all_leaves",
    "as_number",
    "check_conditions",
    "check_targets",
    "effective_params",
    "parse_config",
    "plan",
]
