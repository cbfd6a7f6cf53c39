"""LabBatch's one contract: the rules that several runtimes must agree on, kept once.

Imported by the CDK app, both Lambda functions (bundled into each asset), the runner image,
local mode and the client. Dependency-light on purpose: the standard library and pydantic,
plus boto3's DynamoDB type (de)serializers in `ledger` (every runtime that writes the ledger
has boto3). Nothing here talks to AWS on import.

- `ids`          job ids and ledger timestamps
- `ledger`       the job ledger's record layout and its conditional-write rules
- `names`        every AWS resource name, S3 key and tag LabBatch gives
- `settings`     the lab settings document the CDK app hands both Lambda functions
- `runner_env`   the environment a job's runner reads
- `batch_submit` the SubmitJob request for a job (the API's first submission and recoveries)
- `failures`     failure classes and which of them LabBatch recovers
- `outcome`      how a runner attempt ends: exit codes, phases, manifest and log names
- `batch_reasons` AWS Batch's own words for how attempts end and why jobs wait
- `tes`          GA4GH TES tasks as LabBatch jobs
- `tokens`       TES bearer tokens: format, ledger item, the check the authorizer and local mode share
- `references`   folders, companion-file patterns (CWL secondaryFiles) and where the reference cache lives
- `batch_container` a job definition + SubmitJob as the container the ECS agent starts (local mode, rehearsal)
- `boot_reasons` the console line a failed boot step writes and the client reads back, and the instance tags
"""
