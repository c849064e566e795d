import json
import math
import random
from collections import Counter

import pytest

from mmq.routing import (
    Cache,
    ResolvedTarget,
    Retry,
    RoutingConfig,
    RoutingError,
    check_targets,
    effective_params,
    parse_config,
    plan,
)

PORTKEY_FALLBACK = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {"provider": "openai", "virtual_key": "openai-prod"},
        {
            "provider": "anthropic",
            "virtual_key": "anthropic-prod",
            "override_params": {"model": "claude-sonnet-4-5"},
        },
    ],
}


def _plan(
    config: dict, params: dict | None = None, metadata: dict | None = None, **kw
) -> list[ResolvedTarget]:
    return plan(parse_config(config), params=params or {}, metadata=metadata or {}, **kw)


def _names(targets: list[ResolvedTarget]) -> list[str]:
    return [t.name for t in targets]


# --- parsing ---------------------------------------------------------------------------------------


def test_portkey_fallback_config_plans_both_targets_in_order() -> None:
    params = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    targets = plan(parse_config(json.dumps(PORTKEY_FALLBACK)), params=params, metadata={})
    assert [(t.provider, t.virtual_key) for t in targets] == [
        ("openai", "openai-prod"),
        ("anthropic", "anthropic-prod"),
    ]
    assert _names(targets) == ["targets[0]", "targets[1]"]
    assert targets[0].override_params == {}
    assert targets[1].override_params == {"model": "claude-sonnet-4-5"}
    assert effective_params(params, targets[0])["model"] == "gpt-4o"
    assert effective_params(params, targets[1]) == {**params, "model": "claude-sonnet-4-5"}
    assert params["model"] == "gpt-4o"  # the request's params are not mutated
    assert all(t.fallback_on is None for t in targets)


def test_model_validate_is_the_same_as_parse_config() -> None:
    assert RoutingConfig.model_validate(PORTKEY_FALLBACK) == parse_config(PORTKEY_FALLBACK)


def test_bare_leaf_is_a_config() -> None:
    [t] = _plan({"virtual_key": "openai-prod"})
    assert (t.provider, t.virtual_key, t.name) == ("", "openai-prod", "root")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"provider": "openai", "virtual_keys": "x"}, "virtual_keys"),
        ({"strategy": {"mode": "fallback"}, "targets": [{"provider": "a", "wieght": 2}]}, "targets.0.wieght"),
        ({"strategy": {"mode": "fallback", "on_codes": [429]}, "targets": [{"provider": "a"}]}, "on_codes"),
        ({"provider": "a", "retry": {"attempts": 2, "backoff": 1}}, "retry.backoff"),
    ],
)
def test_unknown_key_is_an_error_naming_the_key(config: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted") as exc:
        parse_config(config)
    assert fragment in str(exc.value)


def test_bad_mode_lists_valid_modes() -> None:
    with pytest.raises(ValueError) as exc:
        parse_config({"strategy": {"mode": "round-robin"}, "targets": [{"provider": "a"}]})
    msg = str(exc.value)
    for mode in ("single", "fallback", "loadbalance", "conditional"):
        assert mode in msg


@pytest.mark.parametrize(
    "config",
    [
        {"provider": "openai", "api_key": "sk-live-secret"},
        {"strategy": {"mode": "fallback"}, "api_key": "sk-live-secret", "targets": [{"provider": "a"}]},
        {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "a"},
                {"strategy": {"mode": "single"}, "targets": [{"provider": "b", "api_key": "sk-live-secret"}]},
            ],
        },
        {"provider": "openai", "override_params": {"extra": {"api_key": "sk-live-secret"}}},
    ],
)
def test_raw_api_key_anywhere_is_refused_with_the_virtual_key_explanation(config: dict) -> None:
    with pytest.raises(ValueError) as exc:
        parse_config(config)
    msg = str(exc.value)
    assert "raw api_key is not accepted in configs" in msg
    assert 'virtual_key: "openai-prod"' in msg
    assert "environment or secrets file" in msg
    assert "sk-live-secret" not in msg  # the refused secret is not echoed into errors/logs


@pytest.mark.parametrize(
    "key", ["aws_secret_access_key", "aws_access_key_id", "authorization", "Authorization"]
)
def test_other_credentials_are_refused_the_same_way(key: str) -> None:
    with pytest.raises(ValueError, match=f"raw {key} is not accepted in configs; name a virtual key"):
        parse_config({"provider": "bedrock", key: "secret"})


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"strategy": {"mode": "fallback"}, "targets": []}, "non-empty 'targets'"),
        ({"strategy": {"mode": "fallback"}}, "non-empty 'targets'"),
        ({"name": "x"}, "needs 'provider' or 'virtual_key'"),
        ({"provider": "a", "targets": [{"provider": "b"}]}, "needs a 'strategy'"),
        ({"strategy": {"mode": "single"}, "provider": "a", "targets": [{"provider": "b"}]}, "leaf targets"),
        (
            {"strategy": {"mode": "loadbalance", "on_status_codes": [429]}, "targets": [{"provider": "a"}]},
            "only applies to mode 'fallback'",
        ),
        (
            {"strategy": {"mode": "fallback", "default": "a"}, "targets": [{"provider": "a", "name": "a"}]},
            "only apply to mode 'conditional'",
        ),
        ({"strategy": {"mode": "conditional"}, "targets": [{"provider": "a"}]}, "non-empty 'conditions'"),
        ({"provider": "a", "weight": -1}, "weight"),
        ({"provider": "a", "request_timeout": 0}, "request_timeout"),
        ({"provider": "a", "request_timeout": "3000"}, "request_timeout"),
        ({"provider": "a", "retry": {"attempts": 11}}, "retry.attempts"),
        ({"provider": "a", "cache": {"mode": "fuzzy"}}, "cache.mode"),
        ({"strategy": {"mode": "fallback", "on_status_codes": [42]}, "targets": [{"provider": "a"}]}, "42"),
    ],
)
def test_structural_errors(config: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_config(config)
    assert fragment in str(exc.value)


def test_invalid_json_text_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_config("{'strategy': ")
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_config("[]")


# --- inheritance -----------------------------------------------------------------------------------


def test_override_params_merge_down_with_nested_dicts_child_winning() -> None:
    config = {
        "strategy": {"mode": "fallback"},
        "override_params": {"temperature": 0.2, "max_tokens": 100, "metadata": {"team": "a", "env": "prod"}},
        "targets": [
            {"provider": "openai", "override_params": {"max_tokens": 500, "metadata": {"env": "canary"}}},
            {
                "strategy": {"mode": "single"},
                "override_params": {"stop": ["\n"], "metadata": {"tier": {"level": 1, "name": "x"}}},
                "targets": [
                    {
                        "provider": "anthropic",
                        "override_params": {"stop": ["END"], "metadata": {"tier": {"level": 2}}},
                    }
                ],
            },
        ],
    }
    first, second = _plan(config)
    assert first.override_params == {
        "temperature": 0.2,
        "max_tokens": 500,
        "metadata": {"team": "a", "env": "canary"},
    }
    assert second.override_params == {
        "temperature": 0.2,
        "max_tokens": 100,
        "stop": ["END"],  # lists replace, they do not concatenate
        "metadata": {"team": "a", "env": "prod", "tier": {"level": 2, "name": "x"}},
    }
    assert second.name == "targets[1].targets[0]"
    first.override_params["metadata"]["team"] = "mutated"  # results do not share state with the config
    assert _plan(config)[0].override_params["metadata"]["team"] == "a"


def test_retry_timeout_cache_inherit_from_nearest_and_replace_whole() -> None:
    config = {
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 3, "on_status_codes": [429, 503], "use_retry_after_header": True},
        "request_timeout": 10_000,
        "cache": {"mode": "simple", "max_age": 60},
        "targets": [
            {"provider": "a", "name": "inherits"},
            {"provider": "b", "name": "own", "retry": {"attempts": 1}, "request_timeout": 2_000},
            {
                "strategy": {"mode": "single"},
                "request_timeout": 5_000,
                "cache": {"mode": "semantic"},
                "targets": [{"provider": "c", "name": "nested"}],
            },
        ],
    }
    inherits, own, nested = _plan(config)
    parent_retry = Retry(attempts=3, on_status_codes=[429, 503], use_retry_after_header=True)
    assert (inherits.retry, inherits.request_timeout_ms, inherits.cache) == (
        parent_retry,
        10_000,
        Cache(mode="simple", max_age=60),
    )
    # whole-object replace: on_status_codes / use_retry_after_header are not carried over from the parent
    assert own.retry == Retry(attempts=1)
    assert own.retry.on_status_codes is None and own.retry.use_retry_after_header is False
    assert own.request_timeout_ms == 2_000
    assert (nested.retry, nested.request_timeout_ms, nested.cache) == (
        parent_retry,
        5_000,
        Cache(mode="semantic"),
    )


def test_on_status_codes_come_from_the_nearest_fallback_node() -> None:
    config = {
        "strategy": {"mode": "fallback", "on_status_codes": [429, 500]},
        "targets": [
            {"provider": "a", "name": "a"},
            {
                "strategy": {"mode": "fallback"},
                "targets": [{"provider": "b", "name": "b"}, {"provider": "c", "name": "c"}],
            },
            {"strategy": {"mode": "single"}, "targets": [{"provider": "d", "name": "d"}]},
        ],
    }
    by_name = {t.name: t.fallback_on for t in _plan(config)}
    assert by_name == {"a": frozenset({429, 500}), "b": None, "c": None, "d": frozenset({429, 500})}


# --- loadbalance -----------------------------------------------------------------------------------

LB = {
    "strategy": {"mode": "loadbalance"},
    "targets": [
        {"provider": "openai", "name": "a", "weight": 0.7},
        {"provider": "anthropic", "name": "b", "weight": 0.2},
        {"provider": "google", "name": "c", "weight": 0.1},
    ],
}


def test_loadbalance_shares_follow_weights() -> None:
    config, rng, n = parse_config(LB), random.Random(1234), 2000
    picks = Counter(plan(config, params={}, metadata={}, rng=rng)[0].name for _ in range(n))
    for name, weight in {"a": 0.7, "b": 0.2, "c": 0.1}.items():
        share = picks[name] / n
        assert abs(share - weight) <= 0.05, (name, share)
        # relative check: a share is binomial, so its standard error is sqrt(w(1-w)/n); 4 standard errors
        # (a false failure about 1 in 15,000 for an unseeded rng) is ~6% of 0.7 but ~27% of 0.1, which is
        # why a flat "within 5% of the weight" cannot hold for the small weight
        assert abs(share - weight) / weight <= 4 * math.sqrt(weight * (1 - weight) / n) / weight, (
            name,
            share,
        )


def test_loadbalance_never_picks_unhealthy_or_zero_weight_targets() -> None:
    config = parse_config(
        {
            "strategy": {"mode": "loadbalance"},
            "targets": [
                {"provider": "openai", "name": "a", "weight": 0.7},
                {"provider": "anthropic", "name": "b", "weight": 0.3},
                {"provider": "google", "name": "zero", "weight": 0},
            ],
        }
    )
    rng = random.Random(7)
    picks = Counter(
        plan(config, params={}, metadata={}, rng=rng, healthy=lambda name: name != "a")[0].name
        for _ in range(500)
    )
    assert picks == Counter({"b": 500})


def test_loadbalance_errors_when_nothing_is_pickable() -> None:
    with pytest.raises(RoutingError, match="no target has a healthy provider"):
        _plan(LB, healthy=lambda name: False)
    zeros = {"strategy": {"mode": "loadbalance"}, "targets": [{"provider": "a", "weight": 0}] * 2}
    with pytest.raises(RoutingError, match="weight 0"):
        _plan(zeros)


def test_loadbalance_is_deterministic_with_a_seeded_rng() -> None:
    config = parse_config(LB)

    def picks(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [plan(config, params={}, metadata={}, rng=rng)[0].name for _ in range(30)]

    assert picks(3) == picks(3)
    assert len(set(picks(3))) > 1


# --- conditional -----------------------------------------------------------------------------------


def _conditional(conditions: list[dict], default: str | None = "fallback-target") -> dict:
    strategy: dict = {"mode": "conditional", "conditions": conditions}
    if default is not None:
        strategy["default"] = default
    return {
        "strategy": strategy,
        "targets": [
            {"provider": "openai", "name": "gold-target"},
            {"provider": "anthropic", "name": "other-target"},
            {"provider": "google", "name": "fallback-target"},
        ],
    }


def _route(query: dict, *, params: dict | None = None, metadata: dict | None = None) -> str:
    [target] = _plan(
        _conditional([{"query": query, "then": "gold-target"}]), params=params, metadata=metadata
    )
    return target.name


def test_conditional_first_match_wins_in_order() -> None:
    config = _conditional(
        [
            {"query": {"metadata.tier": "gold"}, "then": "gold-target"},
            {"query": {"params.model": "gpt-4o"}, "then": "other-target"},
        ]
    )
    assert _names(_plan(config, metadata={"tier": "gold"}, params={"model": "gpt-4o"})) == ["gold-target"]
    assert _names(_plan(config, metadata={"tier": "free"}, params={"model": "gpt-4o"})) == ["other-target"]
    assert _names(_plan(config, metadata={"tier": "free"}, params={"model": "x"})) == ["fallback-target"]


def test_conditional_nested_and_list_index_paths() -> None:
    assert _route({"metadata.user.plan.tier": "gold"}, metadata={"user": {"plan": {"tier": "gold"}}}) == (
        "gold-target"
    )
    assert (
        _route({"metadata.user.plan.tier": "gold"}, metadata={"user": {"plan": "gold"}}) == "fallback-target"
    )
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert _route({"params.messages.0.role": "system"}, params={"messages": messages}) == "gold-target"
    assert _route({"params.messages.1.role": "system"}, params={"messages": messages}) == "fallback-target"
    assert _route({"params.messages.5.role": "user"}, params={"messages": messages}) == "fallback-target"


def test_or_next_to_a_sibling_key_needs_both() -> None:
    query = {"$or": [{"metadata.region": "eu"}, {"params.model": "gpt-4o"}], "metadata.tier": "gold"}
    assert _route(query, metadata={"region": "eu", "tier": "gold"}) == "gold-target"
    assert (
        _route(query, metadata={"region": "us", "tier": "gold"}, params={"model": "gpt-4o"}) == "gold-target"
    )
    # $or holds, the sibling does not -> default
    assert _route(query, metadata={"region": "eu", "tier": "free"}) == "fallback-target"
    # sibling holds, $or does not -> default
    assert _route(query, metadata={"region": "us", "tier": "gold"}) == "fallback-target"


def test_and_combines_queries() -> None:
    query = {"$and": [{"metadata.tier": "gold"}, {"params.max_tokens": {"$lte": 1000}}]}
    assert _route(query, metadata={"tier": "gold"}, params={"max_tokens": 1000}) == "gold-target"
    assert _route(query, metadata={"tier": "gold"}, params={"max_tokens": 1001}) == "fallback-target"


@pytest.mark.parametrize(
    ("query", "metadata", "expected"),
    [
        ({"metadata.tier": {"$in": ["gold", "platinum"]}}, {"tier": "gold"}, True),
        ({"metadata.tier": {"$in": ["gold", "platinum"]}}, {"tier": "free"}, False),
        ({"metadata.tier": {"$nin": ["free"]}}, {"tier": "gold"}, True),
        ({"metadata.tier": {"$nin": ["free"]}}, {"tier": "free"}, False),
        ({"metadata.user": {"$regex": "^svc-[0-9]+$"}}, {"user": "svc-42"}, True),
        ({"metadata.user": {"$regex": "^svc-[0-9]+$"}}, {"user": "alice"}, False),
        ({"metadata.user": {"$regex": "svc"}}, {"user": 5}, False),
        ({"metadata.score": {"$gt": 5}}, {"score": 6}, True),
        ({"metadata.score": {"$gt": 5}}, {"score": 5}, False),
        ({"metadata.score": {"$gte": 5, "$lt": 10}}, {"score": 5}, True),
        ({"metadata.score": {"$gte": 5, "$lt": 10}}, {"score": 10}, False),
        ({"metadata.score": {"$gt": 5}}, {"score": "abc"}, False),  # incompatible types: false, no exception
        ({"metadata.score": {"$gt": 5}}, {"score": [6]}, False),
        ({"metadata.day": {"$gt": "2024-01-01"}}, {"day": "2025-06-01"}, True),
        ({"metadata.score": {"$ne": 5}}, {"score": 4}, True),
        ({"metadata.flag": True}, {"flag": 1}, False),  # JSON true is not 1
        ({"metadata.flag": {"$eq": True}}, {"flag": True}, True),
        # missing paths: false for everything except $ne and $nin
        ({"metadata.missing": "x"}, {}, False),
        ({"metadata.missing": {"$gt": 0}}, {}, False),
        ({"metadata.missing": {"$in": ["x"]}}, {}, False),
        ({"metadata.missing": {"$regex": "."}}, {}, False),
        ({"metadata.missing": {"$ne": "x"}}, {}, True),
        ({"metadata.missing": {"$nin": ["x"]}}, {}, True),
        ({"metadata.a.b.c": {"$ne": "x"}}, {"a": "not-a-dict"}, True),
    ],
)
def test_operators(query: dict, metadata: dict, expected: bool) -> None:
    assert (_route(query, metadata=metadata) == "gold-target") is expected


# batch metadata is always text: a number in the config and numeric text in the metadata are one number
@pytest.mark.parametrize(
    ("query", "metadata", "expected"),
    [
        ({"metadata.priority": {"$gte": 5}}, {"priority": "7"}, True),
        ({"metadata.priority": {"$gte": 5}}, {"priority": "5"}, True),
        ({"metadata.priority": {"$gte": 5}}, {"priority": "4.5"}, False),
        ({"metadata.priority": {"$gt": 5, "$lte": 10}}, {"priority": " 10 "}, True),
        ({"metadata.priority": {"$lt": 0}}, {"priority": "-1e3"}, True),
        ({"metadata.priority": {"$gt": 9}}, {"priority": "10"}, True),  # not "10" < "9" as text
        ({"metadata.priority": {"$gt": "9"}}, {"priority": "10"}, True),  # both texts read as numbers
        ({"metadata.priority": {"$gt": 5}}, {"priority": "high"}, False),
        ({"metadata.priority": {"$gt": 5}}, {"priority": "NaN"}, False),
        ({"metadata.priority": {"$gt": 5}}, {"priority": "inf"}, False),
        ({"metadata.priority": {"$gt": 5}}, {"priority": "0x10"}, False),
        ({"metadata.priority": {"$gt": 5}}, {"priority": True}, False),  # booleans are not numbers
        ({"metadata.priority": 7}, {"priority": "7"}, True),
        ({"metadata.priority": 7}, {"priority": "7.0"}, True),
        ({"metadata.priority": {"$in": [1, 7]}}, {"priority": "7"}, True),
        ({"metadata.priority": {"$nin": [7]}}, {"priority": "7"}, False),
        ({"metadata.priority": {"$ne": 7}}, {"priority": "7"}, False),
        ({"metadata.priority": "7"}, {"priority": 7}, True),
        ({"metadata.id": "007"}, {"id": "7"}, False),  # two texts keep their spelling
        ({"metadata.id": 12345678901234567891}, {"id": "12345678901234567891"}, True),  # exact, no float
        ({"metadata.id": 12345678901234567891}, {"id": "12345678901234567890"}, False),
        ({"params.max_tokens": {"$lte": "1000"}}, {}, False),  # missing stays missing
    ],
)
def test_numbers_compare_with_numeric_text(query: dict, metadata: dict, expected: bool) -> None:
    assert (_route(query, metadata=metadata) == "gold-target") is expected


def _checked(query: dict, *, text_metadata: bool = False) -> None:
    config = parse_config(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [
                    {"query": {"metadata.tier": "gold"}, "then": "a"},
                    {"query": query, "then": "b"},
                ],
                "default": "a",
            },
            "targets": [{"provider": "openai", "name": "a"}, {"provider": "anthropic", "name": "b"}],
        }
    )
    check_targets(config, text_metadata=text_metadata)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ({"metadata.tier": {"$in": []}}, "$in an empty list matches no value"),
        ({"metadata.priority": {"$gt": 10, "$lt": 5}}, "no number meets $gt 10, $lt 5"),
        ({"metadata.priority": {"$gt": 5, "$lte": 5}}, "no number meets $gt 5, $lte 5"),
        ({"metadata.priority": {"$eq": 3, "$gte": 5}}, "no number meets $eq 3, $gte 5"),
        ({"metadata.priority": {"$gt": "10", "$lt": 5}}, 'no number meets $gt "10", $lt 5'),
        ({"$and": [{"metadata.a": "x"}, {"params.n": {"$in": []}}]}, "$and[1]: params.n: $in an empty"),
        ({"$or": [{"metadata.a": {"$in": []}}, {"metadata.b": {"$gt": 2, "$lt": 1}}]}, "$or: none of its"),
    ],
)
def test_conditions_that_can_never_match_are_refused_at_submit(query: dict, why: str) -> None:
    with pytest.raises(ValueError) as exc:
        _checked(query)
    message = str(exc.value)
    assert message.startswith("strategy.conditions[1] (then 'b') can never match: ")
    assert why in message and json.dumps(query, separators=(",", ":")) in message


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ({"metadata.flag": True}, "batch metadata values are text, never true"),
        ({"metadata.flag": {"$eq": None}}, "never null"),
        ({"metadata.tier": {"$in": [False, {"a": 1}]}}, "$in lists none"),
        ({"metadata.user.plan": "gold"}, "nothing lies below one"),
        ({"$or": [{"metadata.a.b": {"$regex": "x"}}, {"metadata.c": [1]}]}, "none of its queries"),
    ],
)
def test_batch_metadata_is_text_so_other_types_never_match(query: dict, why: str) -> None:
    _checked(query)  # a single job's metadata may hold any JSON value
    with pytest.raises(ValueError, match="can never match") as exc:
        _checked(query, text_metadata=True)
    assert why in str(exc.value)


@pytest.mark.parametrize(
    "query",
    [
        {"metadata.priority": {"$gte": 5}},  # numeric text matches
        {"metadata.priority": {"$gt": 5, "$lt": 6}},
        {"metadata.priority": {"$gte": 5, "$lte": 5}},
        {"metadata.priority": {"$gt": "1", "$lt": 5}},
        {"metadata.priority": {"$gt": "abc", "$lt": "b"}},  # text bounds order as text
        {"metadata.priority": 5},
        {"metadata.tier": {"$in": [True, "gold"]}},
        {"metadata.a.b": {"$ne": "x"}},  # true of a value that is not there
        {"$or": [{"metadata.a": {"$in": []}}, {"metadata.b": "x"}]},
        {"params.stream": True},  # params keep their JSON types
    ],
)
def test_conditions_that_can_match_pass(query: dict) -> None:
    _checked(query, text_metadata=True)


def test_a_nested_conditional_is_named_by_its_place() -> None:
    config = parse_config(
        {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai"},
                {
                    "strategy": {
                        "mode": "conditional",
                        "conditions": [{"query": {"metadata.n": {"$in": []}}, "then": "x"}],
                    },
                    "targets": [{"provider": "openai", "name": "x"}],
                },
            ],
        }
    )
    with pytest.raises(ValueError, match=r"^targets\[1\]\.strategy\.conditions\[0\] \(then 'x'\)"):
        check_targets(config)


def test_no_match_and_no_default_is_an_error() -> None:
    config = _conditional([{"query": {"metadata.tier": "gold"}, "then": "gold-target"}], default=None)
    with pytest.raises(RoutingError, match="no condition matched and no default"):
        _plan(config, metadata={"tier": "free"})


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"metadata.tier": {"$eqq": "gold"}}, "unknown operator '$eqq'"),
        ({"$nor": [{"metadata.tier": "gold"}]}, "unknown operator '$nor'"),
        ({"$eq": "gold"}, "put it under a field key"),
        ({"metadata.tier": {"$or": ["a"]}}, "cannot sit under a field"),
        ({"$or": []}, "non-empty list"),
        ({"$and": {"metadata.tier": "gold"}}, "non-empty list"),
        ({"metadata.tier": {"$in": "gold"}}, "takes a list"),
        ({"metadata.name": {"$regex": "("}}, "invalid regex"),
        ({"metadata.tier": {"$gt": [1]}}, "number or a string"),
        ({"metadata.tier": {"$eq": "x", "plain": 1}}, "cannot be mixed"),
        ({"tier": "gold"}, "under 'metadata.' or 'params.'"),
        ({"metadata": "gold"}, "under 'metadata.' or 'params.'"),
    ],
)
def test_bad_queries_fail_at_parse_time(query: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_config(_conditional([{"query": query, "then": "gold-target"}]))
    assert fragment in str(exc.value)


def test_then_or_default_naming_an_unknown_target_is_a_parse_error() -> None:
    with pytest.raises(ValueError, match=r"'nope'.*no target below it"):
        parse_config(_conditional([{"query": {"metadata.tier": "gold"}, "then": "nope"}]))
    with pytest.raises(ValueError, match=r"'missing-default'.*no target below it"):
        parse_config(
            _conditional([{"query": {"metadata.tier": "gold"}, "then": "gold-target"}], "missing-default")
        )


def test_then_naming_an_ambiguous_target_is_a_parse_error() -> None:
    config = _conditional([{"query": {"metadata.tier": "gold"}, "then": "gold-target"}])
    config["targets"].append({"provider": "x", "name": "gold-target"})
    with pytest.raises(ValueError, match="2 targets below it share"):
        parse_config(config)


def test_then_can_name_a_deeper_node_and_inherits_through_the_path() -> None:
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.tier": "gold"}, "then": "premium"}],
            "default": "cheap",
        },
        "override_params": {"temperature": 0},
        "targets": [
            {
                "strategy": {"mode": "fallback"},
                "override_params": {"max_tokens": 10},
                "targets": [
                    {
                        "name": "premium",
                        "strategy": {"mode": "fallback"},
                        "targets": [
                            {"provider": "openai", "name": "p1"},
                            {"provider": "anthropic", "name": "p2"},
                        ],
                    },
                    {"provider": "google", "name": "cheap"},
                ],
            }
        ],
    }
    gold = _plan(config, metadata={"tier": "gold"})
    assert _names(gold) == ["p1", "p2"]
    assert gold[0].override_params == {"temperature": 0, "max_tokens": 10}
    assert _names(_plan(config, metadata={"tier": "free"})) == ["cheap"]


# --- nesting ---------------------------------------------------------------------------------------


def test_fallback_whose_second_target_is_a_loadbalance_node() -> None:
    config = parse_config(
        {
            "strategy": {"mode": "fallback", "on_status_codes": [429, 503]},
            "override_params": {"max_tokens": 256},
            "targets": [
                {"provider": "openai", "virtual_key": "openai-prod", "name": "primary"},
                {
                    "strategy": {"mode": "loadbalance"},
                    "override_params": {"model": "claude-sonnet-4-5"},
                    "targets": [
                        {"provider": "anthropic", "virtual_key": "anthropic-a", "weight": 3},
                        {"provider": "anthropic", "virtual_key": "anthropic-b", "weight": 1},
                    ],
                },
            ],
        }
    )
    rng = random.Random(0)
    seen = Counter()
    for _ in range(400):
        primary, backup = plan(config, params={}, metadata={}, rng=rng)
        assert primary.name == "primary" and primary.override_params == {"max_tokens": 256}
        assert backup.override_params == {"max_tokens": 256, "model": "claude-sonnet-4-5"}
        assert backup.fallback_on == frozenset({429, 503})
        seen[backup.name] += 1
    assert set(seen) == {"targets[1].targets[0]", "targets[1].targets[1]"}
    assert seen["targets[1].targets[0]"] > seen["targets[1].targets[1]"]

    # the loadbalance child is skipped by health only inside its own subtree
    only_b = plan(config, params={}, metadata={}, rng=rng, healthy=lambda n: n != "targets[1].targets[0]")
    assert _names(only_b) == ["primary", "targets[1].targets[1]"]
