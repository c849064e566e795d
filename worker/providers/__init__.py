"""Provider adapters: a module per provider, a folder for large ones (bedrock/, gemini/: a file per
capability, auth and errors apart). Adding a provider is a module, a line in REGISTRY and a line in the
catalog (mmq/catalog.py), which a test holds against REGISTRY.

Every adapter is a worker.providers.protocol.WireAdapter: it translates, parses and classifies errors;
the HTTP exchange is the one shared send path (send.py) and field renames the one parameter-map engine
(params.py). The pipeline only calls `get_adapter(provider).call(...)`."""

from __future__ import annotations

from worker.providers.anthropic import AnthropicAdapter
from worker.providers.azure import AzureOpenAIAdapter
from worker.providers.base import Adapter, AudioInput, MediaRules, ProviderResponse, Target
from worker.providers.bedrock import BedrockAdapter
from worker.providers.deepgram import DeepgramAdapter
from worker.providers.elevenlabs import ElevenLabsAdapter
from worker.providers.gemini import GeminiAdapter
from worker.providers.groq import GroqAdapter
from worker.providers.openai import OpenAIAdapter
from worker.providers.stability import StabilityAdapter
from worker.providers.vertex_anthropic import VertexAnthropicAdapter

REGISTRY: dict[str, Adapter] = {
    "anthropic": AnthropicAdapter(),
    "azure-openai": AzureOpenAIAdapter(),
    "bedrock": BedrockAdapter(),
    "deepgram": DeepgramAdapter(),
    "elevenlabs": ElevenLabsAdapter(),
    "gemini": GeminiAdapter(),
    "vertex": GeminiAdapter(name="vertex", vertex=True),
    "vertex-anthropic": VertexAnthropicAdapter(),  # Claude on Vertex AI (rawPredict)
    "groq": GroqAdapter(),
    "openai": OpenAIAdapter(),
    # any OpenAI-compatible server (Ollama, vLLM, LocalAI) speaks the same dialect at its own base URL
    "openai-compatible": OpenAIAdapter(name="openai-compatible"),
    "stability": StabilityAdapter(),
}


def get_adapter(provider: str) -> Adapter:
    try:
        return REGISTRY[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; known: {sorted(REGISTRY)}") from None


__all__ = ["REGISTRY", "Adapter", "AudioInput", "MediaRules", "ProviderResponse", "Target", "get_adapter"]
