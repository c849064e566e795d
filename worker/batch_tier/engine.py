"""The batch tier's engine (its public face; a module per step: deposit, gather, poll, harvest, and steps for
what they share): what can wait goes through its provider's own batch API at the batch price,
and what cannot wait any longer comes back to a realtime call in time for the deadline.

A job's life on this tier, each step an arq job or a step of one (so a killed worker's step runs again):
1. deposit (the job function, worker/pipeline.py): a job of a `batch`/`auto` batch whose first target
   has a native batch API (worker/batch_tier/apis) is planned and made ready as for a realtime call;
   instead of the call, the realtime adapter's own translation becomes its batch line (kept in storage:
   it may hold base64 media) and the job waits, `provider_batch`, in its group (target, model, kind).
   A gather task for the group is scheduled once per `gather_s` window.
2. gather (`nb_gather`): the group's waiting jobs become packs (the intent, recorded first), and each
   pack becomes one provider batch tagged with the pack's id; a pack found `creating` (its gather died)
   is adopted by that tag or created, never twice. A refused create sends its jobs realtime.
   Packs stay within the enqueued-token limit of their ledger (provider, key, model: the target's
   `batch_queue_tokens`, else MMQ_BATCH_TIER_QUEUE_TOKENS, and a lower one learned from a refusal);
   jobs past it wait for a pack of the ledger to end, or go realtime when their deadline can wait no
   longer. A pack the provider refuses for that quota (a 429 at the create, or a batch failed with
   `token_limit_exceeded`) waits and shrinks while the deadline allows (quota.py).
   An API with a minimum batch (`min_requests`: Bedrock's) gathers a group again while its jobs are
   still coming in, and sends a pack below the minimum realtime (never padded); one the operator has
   not configured (`enabled` False) takes no deposits.
3. poll (`nb_poll`, re-run with a backoff): the provider batch's state. While it runs, the latest moment
   to fall back is recomputed: the deadline, less the time the jobs still pending need realtime at their
   target's rate, less a margin. At that moment the provider batch is cancelled and its pending jobs go
   realtime at once (so the deadline holds whatever the cancellation takes).
4. harvest (when it ended): each line is stored exactly as a realtime answer is (result, cache entry,
   counters, an attempt with `tier: batch` and the provider batch id, the cost at the batch price). A line
   that finished during the cancellation of a pack that fell back answers its job if the realtime call has
   not run yet; if it has, the job was paid twice: counted in its batch's `paid_twice`, the first answer
   kept. A line that may run again (expired, cancelled, a 5xx inside the batch) goes realtime; a 4xx
   fails its job.
"""

from __future__ import annotations

from worker.batch_tier.deposit import Deposit, deposit, eligible, realtime_rate
from worker.batch_tier.gather import gather_pack, rescue
from worker.batch_tier.harvest import harvest
from worker.batch_tier.poll import next_poll_s, poll_pack
from worker.batch_tier.steps import GATHER_FUNCTION, PACK_KEY, POLL_FUNCTION, fallback_at, line_key, target_of

__all__ = [
    "GATHER_FUNCTION",
    "PACK_KEY",
    "POLL_FUNCTION",
    "Deposit",
    "deposit",
    "eligible",
    "fallback_at",
    "gather_pack",
    "harvest",
    "line_key",
    "next_poll_s",
    "poll_pack",
    "realtime_rate",
    "rescue",
    "target_of",
]
