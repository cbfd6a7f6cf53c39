"""The scientist's side: the `labbatch` command, the SDK (sdk.LabBatchClient), transfers, logs,
reports, doctor, costs and the TES proxy. It reaches a lab only through its API and buckets,
local or deployed, and never imports local mode (cli loads `labbatch local` by name)."""
