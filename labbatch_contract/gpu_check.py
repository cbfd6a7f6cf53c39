"""The check that a job given GPUs can see them: one POSIX shell command, run by the runner
before the tool of every job that asked for GPUs (and so by `labbatch doctor`'s GPU canary).

Why a shell command and not Python: it must behave the same in any image, including ones with
neither Python nor `nvidia-smi`. The ECS agent hands a GPU job its GPUs by setting
`NVIDIA_VISIBLE_DEVICES` (the AL2023 GPU AMI's NVIDIA container runtime reads it); images with
the NVIDIA driver's tools also have `nvidia-smi`, which lists what the container really sees.
`void` and `none` are the runtime's own spellings of "no GPU".
"""

from __future__ import annotations

from labbatch_contract import runner_env

# Set in the SubmitJob request's environment of a job that asks for GPUs (the API's
# batch_requests); the runner runs the check when it is above 0.
GPUS_ENV = runner_env.GPUS
# The runner's failure code in the manifest when the check fails.
FAILURE_CODE = "no_gpu_visible"
OK_PREFIX = "labbatch gpu check: ok:"
FAILED_PREFIX = "labbatch gpu check: no GPU visible:"

SCRIPT = f"""\
if command -v nvidia-smi >/dev/null 2>&1; then
  if listed=$(nvidia-smi -L 2>&1) && printf '%s\\n' "$listed" | grep -q '^GPU '; then
    printf '%s\\n' "{OK_PREFIX} nvidia-smi lists" "$listed"
    exit 0
  fi
  printf '%s\\n' "{FAILED_PREFIX} nvidia-smi lists no GPU: $listed" >&2
  exit 1
fi
case "${{NVIDIA_VISIBLE_DEVICES:-}}" in
  ""|void|none)
    echo "{FAILED_PREFIX} NVIDIA_VISIBLE_DEVICES is '${{NVIDIA_VISIBLE_DEVICES:-}}' and this image has no nvidia-smi \
(the job asked for GPUs but was given none: is its compute environment on a GPU instance with the ECS GPU AMI?)" >&2
    exit 1;;
esac
echo "{OK_PREFIX} NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES (this image has no nvidia-smi to list them)"
"""


def argv() -> list[str]:
    return ["/bin/sh", "-c", SCRIPT]
