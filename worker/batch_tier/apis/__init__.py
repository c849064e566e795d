"""The provider batch clients: one `NativeBatchAPI` (worker/batch_tier/protocol.py) per provider batch API.

Why a registry keyed like the realtime one: the engine knows a job's target by its realtime provider
name (worker.providers.REGISTRY), and asks `native_for(provider)` whether that provider has a batch
API mmq speaks; None means the job runs realtime. A module per API:
- openai.py: OpenAI Files + Batches, and the same wire at Azure OpenAI and Groq;
- anthropic.py: Anthropic Message Batches;
- gemini.py: the Gemini API's batch mode (AI Studio).
Not here (no client yet): Vertex AI batch prediction, Claude on Vertex, Bedrock (their input and
output go through GCS / S3), and every provider without a batch API (reference §8).
"""

from __future__ import annotations

from worker.batch_tier.apis.anthropic import AnthropicBatches
from worker.batch_tier.apis.gemini import GeminiBatches
from worker.batch_tier.apis.openai import AzureBatches, GroqBatches, OpenAIBatches
from worker.batch_tier.protocol import NativeBatchAPI

NATIVE: dict[str, NativeBatchAPI] = {
    api.provider: api
    for api in (
        OpenAIBatches(),
        AzureBatches(),
        GroqBatches(),
        AnthropicBatches(),
        GeminiBatches(),
    )
}


def native_for(provider: str) -> NativeBatchAPI | None:
    """The batch client of a realtime provider name, or None when it has none."""
    return NATIVE.get(provider)


__all__ = ["NATIVE", "native_for"]
