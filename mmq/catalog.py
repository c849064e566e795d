"""The provider catalog: which providers exist, which job kinds each does, where its public API is.

Data, not code, so that the front (submit-time checks, quotes, the console) knows the providers without
importing an adapter (and botocore with it). The worker's adapters must agree with it: a test holds
`worker.providers.REGISTRY` against this table, so adding a provider is one adapter module plus one line
here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmq.request_models import Kind

ALL_KINDS = frozenset(Kind)
_AUDIO = frozenset({Kind.transcription, Kind.translation})


@dataclass(frozen=True)
class Provider:
    name: str
    kinds: frozenset[Kind]
    # the provider's own public endpoint; None where every customer has their own (Azure, Vertex) or the
    # worker's settings name it (OpenAI: MMQ_OPENAI_BASE_URL)
    default_base_url: str | None


CATALOG: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("anthropic", frozenset({Kind.chat}), "https://api.anthropic.com"),
        Provider("azure-openai", ALL_KINDS, None),
        Provider(
            "bedrock", frozenset({Kind.chat, Kind.image}), "https://bedrock-runtime.{region}.amazonaws.com"
        ),
        Provider("deepgram", frozenset({Kind.transcription}), "https://api.deepgram.com"),
        Provider("elevenlabs", frozenset({Kind.speech}), "https://api.elevenlabs.io"),
        Provider("gemini", frozenset({Kind.chat, Kind.image}), "https://generativelanguage.googleapis.com"),
        Provider("vertex", frozenset({Kind.chat, Kind.image}), None),
        Provider("vertex-anthropic", frozenset({Kind.chat}), None),  # Claude on Vertex AI
        Provider("groq", frozenset({Kind.chat}) | _AUDIO, "https://api.groq.com/openai/v1"),
        Provider("openai", ALL_KINDS, None),
        # any OpenAI-compatible server (Ollama, vLLM, LocalAI) speaks the same dialect at its own base URL
        Provider("openai-compatible", ALL_KINDS, None),
        Provider("stability", frozenset({Kind.image}), "https://api.stability.ai"),
    )
}


def can_do(provider: str, kind: Kind) -> bool:
    """Whether `provider` does `kind` jobs; an unknown provider is left to fail with its own error."""
    known = CATALOG.get(provider)
    return known is None or kind in known.kinds
