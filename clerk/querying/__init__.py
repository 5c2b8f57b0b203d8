"""Querying: which debtors are due, asking a registry about a batch of them, and recording each lookup and hit
once.

- `due`: the schedule (active cases, terminated ones, answers owed within 24 hours) and shards.
- `runs`: query runs, the subjects of a batch, the registries' rows.
- `record`: recording a reply (lookups, new and changed assets, audit) idempotently.
- `batch`: a sweep's page at every registry at once: asked, then each lookup recorded once with its
  answer; one registry, one batch of debtors (a case query's): written down, asked, recorded; late
  answers collected.
"""

from __future__ import annotations

from clerk.querying.assets import update_asset
from clerk.querying.batch import (
    BatchResult,
    Tally,
    collect_queries,
    query_batch,
    query_page,
    record_query_reply,
)
from clerk.querying.due import MAX_SHARDS, Schedule, Shard, count_due, due_debtor_ids, due_page
from clerk.querying.record import (
    Recorded,
    cases_of,
    pending_requests,
    record_failure,
    record_reply,
    record_sent,
    stamp_queried,
)
from clerk.querying.runs import (
    CaseQuery,
    debtor_ids_of_case,
    ensure_registries,
    finish_run,
    new_request_ref,
    run_summaries,
    start_case_query,
    start_run,
    subjects,
)

__all__ = [
    "MAX_SHARDS",
    "BatchResult",
    "CaseQuery",
    "Recorded",
    "Schedule",
    "Shard",
    "Tally",
    "cases_of",
    "collect_queries",
    "count_due",
    "debtor_ids_of_case",
    "due_debtor_ids",
    "due_page",
    "ensure_registries",
    "finish_run",
    "new_request_ref",
    "pending_requests",
    "query_batch",
    "query_page",
    "record_failure",
    "record_query_reply",
    "record_reply",
    "record_sent",
    "run_summaries",
    "stamp_queried",
    "start_case_query",
    "start_run",
    "subjects",
    "update_asset",
]
