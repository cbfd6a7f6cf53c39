"""Local mode's AWS Batch: the executor that really runs jobs (executor, registry, job_book,
dispatcher, scheduler, attempt_plan, spot, attempt, retry, jobs, models, describe), the REST-JSON
API botocore's `batch` client speaks (api, calls, http_server) and `service`, which the launcher
uses to put the two together on loopback."""
