"""The figures a report needs, from the job API's report routes (never from manifests).

Jobs named on the command line, or every job created since a moment (optionally of one
pipeline); each job's recoveries are followed (`recovered_by`), so a sample that ran out of
memory and was resubmitted shows both attempts; an array job's ended children are read a page
at a time (GET /jobs/{id}/report, from the ledger's report blocks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from labbatch.client.sdk import LabBatchClient
from labbatch_contract.measures import FIGURES, decode_figures

CHILDREN_PER_PAGE = 5000


@dataclass
class Gathered:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job_id -> its summary (with figures)
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # array job_id -> ended children
    requests: int = 0
    bytes_read: int = 0  # the answers' JSON, as a measure of what the report read

    def count(self, answer: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        self.bytes_read += len(json.dumps(answer, separators=(",", ":")))
        return answer


def gather(client: LabBatchClient, *, job_ids: Iterable[str] = (), since: str | None = None,
           pipeline: str | None = None) -> Gathered:
    found = Gathered()
    pending = list(job_ids)
    if since is not None:
        token = None
        while True:
            answer = found.count(client.request("GET", "/report", query={
                "since": since, **({"pipeline": pipeline} if pipeline else {}), **({"next_token": token} if token else {})}))
            pending += [job["job_id"] for job in answer["jobs"]]
            token = answer.get("next_token")
            if not token:
                break
    while pending:
        job_id = pending.pop(0)
        if job_id in found.jobs:
            continue
        _job(client, job_id, found)
        recovery = found.jobs[job_id].get("recovered_by")
        if recovery and recovery not in found.jobs:
            pending.append(recovery)
    return found


def _job(client: LabBatchClient, job_id: str, found: Gathered) -> None:
    token = None
    while True:
        query = {"limit": CHILDREN_PER_PAGE, **({"next_token": token} if token else {})}
        answer = found.count(client.request("GET", f"/jobs/{job_id}/report", query=query))
        fields = answer["figure_fields"]
        found.jobs[job_id] = _named(answer["job"], fields)
        if "children" in answer:
            found.children.setdefault(job_id, []).extend(_named(child, fields) for child in answer["children"])
        token = answer.get("next_token")
        if not token:
            return


def _named(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """A job's or child's attempts as maps, named by the fields the API sent with them."""
    return {**row, FIGURES: decode_figures(row.get(FIGURES), fields)}
