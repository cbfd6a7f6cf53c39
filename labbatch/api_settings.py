"""What the API handler needs to know about its lab, as the JSON its `LABBATCH_SETTINGS` holds.

Built from the lab config model, the one source of names and limits; the CDK stack passes it
with CloudFormation tokens for account and Region, local mode with its own values.
"""

from __future__ import annotations

import json

from labbatch import names
from labbatch.api_limits import MAX_BODY_BYTES
from labbatch.config import Lab, Recovery

# Lambda allows 4 KB for all of a function's environment variables together.
LAMBDA_ENVIRONMENT_LIMIT = 4096
SETTINGS_VARIABLE = "LABBATCH_SETTINGS"


class SettingsTooLarge(ValueError):
    pass


def handler_settings(lab: Lab, account: str, region: str) -> dict:
    queues = {q: names.job_queue(lab.name, q) for q, vcpus in lab.queue_max_vcpus.items() if vcpus > 0}
    return {
        "lab": lab.name,
        "table": names.ledger_table(lab.name),
        "buckets": {kind: names.bucket(lab.name, kind, account, region)
                    for kind in ("inputs", "references", "results")},
        "queues": queues,
        "queue_max_vcpus": {q: lab.queue_max_vcpus[q] for q in queues},
        "scratch_gib": lab.compute.scratch.size_gib,
        "max_body_bytes": MAX_BODY_BYTES,
        "limits": {k: v for k, v in lab.job_limits.items() if k != "scratch_gib"},
        "pipelines": {
            name: {
                "job_definition": names.job_definition(lab.name, name),
                "vcpus": p.vcpus,
                "memory_mib": p.memory_mib,
                "timeout_minutes": p.timeout_minutes,
                "disk_factor": p.disk_factor,
                "parameters": dict(p.parameters),
                "description": p.description,
                "default_queue": p.default_queue,
                # Only when some recovery is off: the status updater takes absent as all on,
                # which keeps the common case out of Lambda's 4 KB environment.
                **({"recovery": p.recovery.model_dump()} if p.recovery != Recovery() else {}),
            }
            for name, p in lab.pipelines.items()
        },
    }


def check_size(lab: Lab) -> int:
    """Bytes of the settings at their longest (12-digit account, longest Region); raise if too big."""
    rendered = json.dumps(handler_settings(lab, "0" * 12, "x" * names.LONGEST_REGION), separators=(",", ":"))
    # Leave room for the handler's other variables (service name, log level, ...).
    budget = LAMBDA_ENVIRONMENT_LIMIT - 512
    if len(rendered) > budget:
        raise SettingsTooLarge(
            f"lab {lab.name}: the API handler's settings take {len(rendered):,} bytes, over the {budget:,} "
            f"that Lambda's 4 KB environment leaves (shorten pipeline descriptions or parameter defaults)")
    return len(rendered)
