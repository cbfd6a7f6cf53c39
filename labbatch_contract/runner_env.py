"""The environment a job's runner reads: the contract between a SubmitJob request (or a job
definition) and `labbatch_runner` (containers/runner/README.md has the whole table)."""

from __future__ import annotations

# Every variable of the runner's own starts with this; the tool never sees them.
PREFIX = "LABBATCH_"
JOB_ID = "LABBATCH_JOB_ID"
INPUTS = "LABBATCH_INPUTS"  # the job's own inputs, {input}/{inputs}
SHARED_INPUTS = "LABBATCH_SHARED_INPUTS"  # what every sample shares, {shared_input(s)}
PARAMETERS = "LABBATCH_PARAMETERS"
OUTPUT_PREFIX = "LABBATCH_OUTPUT_PREFIX"
SAMPLES_URI = "LABBATCH_SAMPLES_URI"
SCRATCH_DIR = "LABBATCH_SCRATCH_DIR"
LAB = "LABBATCH_LAB"
PIPELINE = "LABBATCH_PIPELINE"
# The pipeline's companion patterns (labbatch_contract.references) as JSON, from its job
# definition: {"inputs": [".bai"], "param:reference": [".amb", ...]}.
SECONDARY_FILES = "LABBATCH_SECONDARY_FILES"
# The pipeline's disk factor, from its job definition: the runner makes that much room for the tool
# (its own inputs x factor) when unused reference-cache entries take the scratch volume.
DISK_FACTOR = "LABBATCH_DISK_FACTOR"
# GPUs the job asked for: above 0, the runner first checks it sees them (labbatch_contract.gpu_check).
GPUS = "LABBATCH_GPUS"
# A GA4GH TES task (labbatch_contract.tes): its inputs, outputs and executors as JSON. With it
# the runner runs the executors itself instead of a pipeline argv.
TES_TASK = "LABBATCH_TES_TASK"
# Set by local mode's host executor when it starts a TES task's runner in a private mount
# namespace with a fresh directory mounted over /tmp: the launcher's own mount namespace
# (`readlink /proc/self/ns/mnt`), so the runner can tell that it is no longer in it.
TES_PRIVATE_TMP = "LABBATCH_TES_PRIVATE_TMP"
# Set by AWS Batch itself.
ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
ATTEMPT = "AWS_BATCH_JOB_ATTEMPT"

# The runner's placeholders in a tool's argv (containers/runner/README.md): `{{`/`}}` literal braces,
# else `{name}` or `{name:detail}`. The lab config reads commands with the same grammar.
PLACEHOLDER_TOKEN = r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}"
# Placeholders that stand for several arguments, so they must be a whole argument.
LIST_PLACEHOLDERS = ("inputs", "shared_inputs")

# What a recovery passes on from the failed job's environment; the rest comes from the job
# definition or is the new job's own.
PASSED_ON_BY_RECOVERY = (INPUTS, SHARED_INPUTS, PARAMETERS, TES_TASK, GPUS)
