"""The EventBridge event AWS sends for every Batch job state change, built from DescribeJobs' job.

Local mode feeds these to the real status handler, so it must be the very shape a rule on
`{"source": ["aws.batch"], "detail-type": ["Batch Job State Change"]}` delivers.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

DETAIL_TYPE = "Batch Job State Change"
SOURCE = "aws.batch"


def job_state_change(job_detail: dict[str, Any], *, account: str, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [job_detail["jobArn"]],
        "detail": job_detail,
    }
