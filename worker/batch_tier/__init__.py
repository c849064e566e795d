"""The batch tier: jobs that can wait go through their provider's own batch API at the batch price, and
come back to a realtime call in time for their deadline.

    protocol.py   what a provider's batch API module writes (NativeBatchAPI, ProviderBatch, LineResult)
    apis/         one module per provider batch API (OpenAI and its Azure and Groq variants, Anthropic,
                  Gemini, Vertex AI, Bedrock), and `native_for(provider)`
    engine.py     the tier's face for the worker: the steps below, named once
    deposit.py    which jobs may wait, and a job joining its group
    gather.py     a group's jobs into packs, each pack one provider batch (never created twice)
    poll.py       poll with a backoff; the deadline fallback
    harvest.py    each line answers its job as a realtime call would
    steps.py      what the steps share (scheduling, a pack's end, its target, the fallback moment)
    quota.py      the enqueued-token quota

Its records and the atomic moves of a job are in mmq/packs.py (the API reads them too).
"""
