"""The scientist's side: the `labbatch` command, the SDK (sdk.LabBatchClient), transfers, logs,
reports, doctor, costs and the TES proxy. It reaches a lab only through its API and buckets,
local or deployed. It never imports local mode: the command loads `labbatch local` by name, and
the one crossing is doctor asking this machine's container engine which images a local lab's
executor holds (tests/config/test_package_layers.py)."""
