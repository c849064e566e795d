"""The provider batch clients: one `NativeBatchAPI` (worker/batch_tier/protocol.py) per provider batch API.

Why a registry keyed like the realtime one: the engine knows a job's target by its realtime provider
name (worker.providers.REGISTRY), and asks `native_for(provider)` whether that provider has a batch
API mmq speaks; None means the job runs realtime. A module per API:
- openai.py: OpenAI Files + Batches, and the same wire at Azure OpenAI and Groq;
- anthropic.py: Anthropic Message Batches;
- gemini.py: the Gemini API's batch mode (AI Studio);
- vertex.py: Vertex AI batch prediction, for Gemini ("vertex") and Claude on Vertex
  ("vertex-anthropic"), its lines in vertex_lines.py and its Cloud Storage input and output through
  vertex_gcs.py (`enabled` only with MMQ_VERTEX_BATCH_GCS_URI: else those jobs run realtime);
- bedrock.py: Bedrock batch inference (CreateModelInvocationJob), its records in the operator's S3
  through bedrock_s3.py (`enabled` only with MMQ_BEDROCK_BATCH_S3_URI and MMQ_BEDROCK_BATCH_ROLE_ARN,
  and a group under MMQ_BEDROCK_BATCH_MIN_RECORDS runs realtime: `min_requests`).
Not here: every provider without a batch API (reference §8).
"""

from __future__ import annotations

from worker.batch_tier.apis.anthropic import AnthropicBatches
from worker.batch_tier.apis.bedrock import BedrockBatches
from worker.batch_tier.apis.gemini import GeminiBatches
from worker.batch_tier.apis.openai import AzureBatches, GroqBatches, OpenAIBatches
from worker.batch_tier.apis.vertex import VertexClaudeBatches, VertexGeminiBatches
from worker.batch_tier.protocol import NativeBatchAPI

NATIVE: dict[str, NativeBatchAPI] = {
    api.provider: api
    for api in (
        OpenAIBatches(),
        AzureBatches(),
        GroqBatches(),
        AnthropicBatches(),
        GeminiBatches(),
        VertexGeminiBatches(),
        VertexClaudeBatches(),
        BedrockBatches(),
    )
}


def native_for(provider: str) -> NativeBatchAPI | None:
    """The batch client of a realtime provider name, or None when it has none."""
    return NATIVE.get(provider)


__all__ = ["NATIVE", "native_for"]
