"""The largest request body the job API takes: the one limit the handler (through its settings),
the local API front and the client all apply, and docs/local-mode.md states.

API Gateway itself takes up to 10 MB, but a Lambda proxy integration's whole event must stay
under Lambda's 6 MB invocation payload, so LabBatch's limit is 5 MiB; a 10,000-sample array job
with two inputs per sample is about 2 MB. Kept in a module of its own so that the client can
read it without importing the lab config model.
"""

MAX_BODY_BYTES = 5 * 1024 * 1024
