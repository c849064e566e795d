"""The batch tier: jobs that can wait go through their provider's own batch API at the batch price, and
come back to a realtime call in time for their deadline.

    protocol.py   what a provider's batch API module writes (NativeBatchAPI, ProviderBatch, LineResult)
    apis/         one module per provider batch API (OpenAI and its Azure and Groq variants, Anthropic,
                  Gemini), and `native_for(provider)`
    engine.py     deposit → gather → poll → harvest, and the deadline fallback

Its records and the atomic moves of a job are in mmq/packs.py (the API reads them too).
"""
