"""Optional dependencies (pyproject extras) and the one error a feature gives when its extra is missing.

The base install runs the API, the workers and the CLI on Redis and a local-folder store. Some features
need more, each an extra (`pip install 'mmq[all]'` for everything):

- `s3`: S3-compatible storage (`MMQ_STORAGE_URL=s3://…`): obstore.
- `bedrock`: SigV4 signing for AWS Bedrock targets (and its verification in the simulator): botocore.
  A Bedrock API key (`x-mmq-aws-auth: bearer`) needs nothing more.
- `embedded`: the all-in-one `mmq run` on an in-memory Redis: fakeredis with Lua (lupa).
- `otel`: OpenTelemetry spans (mmq/tracing.py); without it tracing is simply off.

A feature imports its package through `require`, at the moment it is used, so a base install imports
every module and only the feature itself stops, with a message naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {
    "s3": ("obstore",),
    "bedrock": ("botocore",),
    "embedded": ("fakeredis", "lupa"),
    "otel": ("opentelemetry",),  # mmq/tracing.py: spans only when installed and MMQ_OTEL=1
}


class MissingExtra(ImportError):
    """A feature was used without its extra installed. The message names the feature and the extra."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature}: install mmq[{extra}] (pip install 'mmq[{extra}]', or 'mmq[all]' for every "
            f"optional feature); {module} is not installed",
            name=module,
        )


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """`import module`, or MissingExtra naming `feature` and `extra` when the package is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing and missing not in {module.split(".")[0], *EXTRAS.get(extra, ())}:
            raise  # something else is missing: not ours to explain
        raise MissingExtra(feature, extra, missing or module) from None
