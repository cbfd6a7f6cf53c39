"""Local mode's AWS Batch: the executor that really runs jobs (executor, scheduler, attempt,
retry, reasons, jobs, models), the REST-JSON API botocore's `batch` client speaks (api, calls,
http_server) and `service`, which the launcher uses to put the two together on loopback."""
