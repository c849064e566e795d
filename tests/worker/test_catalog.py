"""The provider catalog (data the front reads) agrees with the worker's adapters (code the worker runs)."""

from __future__ import annotations

from mmq.catalog import CATALOG
from worker.providers import REGISTRY


def test_every_adapter_is_in_the_catalog_with_its_kinds_and_endpoint():
    assert set(CATALOG) == set(REGISTRY)
    for name, adapter in REGISTRY.items():
        entry = CATALOG[name]
        assert entry.kinds == adapter.kinds, name
        assert entry.default_base_url == getattr(adapter, "default_base_url", None), name
