"""The job ledger's key schema: the table the stack creates, local mode creates and the handler uses."""

PARTITION_KEY = "job_id"
BY_CREATED_INDEX = "by_created"
BY_CREATED_PARTITION = "record_type"
BY_CREATED_SORT = "created_at"
TTL_ATTRIBUTE = "expires_at"
