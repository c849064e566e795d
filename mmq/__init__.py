"""mmq: batch multimodal AI jobs (vision chat, image generation, speech, transcription) over Redis + arq.

This package is the shared core (the job contract, Redis keys and records, the queue side of arq,
storage, media basics, the cache key, the routing schema, the provider catalog, settings) that the
front (`producer`) and the workers (`worker`) both build on, and the public face below. Only the names
in `__all__` are public; tests/mmq/test_public_face.py holds them, so anything else may change.
"""

from mmq.client import Batch, Client, MMQError
from mmq.contract import BatchCounts, BatchStatus, JobStatus
from mmq.request_models import Kind
from mmq.settings import Settings

__all__ = ["Batch", "BatchCounts", "BatchStatus", "Client", "JobStatus", "Kind", "MMQError", "Settings"]
