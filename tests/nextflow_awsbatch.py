"""What Nextflow's `awsbatch` executor runs in a task container, rendered as Nextflow renders it.

Transcribed, not paraphrased, from nextflow-io/nextflow at commit
2aad02f65758dd5d0fb0b1c74786ad52f9d06f1a (26.08.0-edge; plugin nf-amazon 3.10.2):
- AwsBatchExecutor.s3Cmd (plugins/nf-amazon/src/main/nextflow/cloud/aws/batch/AwsBatchExecutor.groovy):
  the job's command, `bash -o pipefail -c '<trap ...>; <aws> s3 cp --only-show-errors <work>/.command.run - | bash ...'`.
- S3BashLib.retryEnv/s3Lib (plugins/nf-amazon/src/main/nextflow/cloud/aws/util/S3BashLib.groovy):
  nxf_s3_upload / nxf_s3_download with `--only-show-errors`, `--recursive`, `--storage-class`, `--sse`.
- BashFunLib.coreLib (modules/nextflow/src/main/groovy/nextflow/executor/BashFunLib.groovy):
  nxf_cp_retry (the retry wrapper) and nxf_parallel.
- AwsBatchFileCopyStrategy (same package as the executor): stage-in lines (`downloads+=(...)`, wrapped
  in nxf_cp_retry when maxTransferAttempts > 1 and retryMode is 'built-in'), the unstage loop,
  touchFile (`echo start | nxf_s3_upload - ...`) and exitFile (`| nxf_s3_upload - ... || true`).
- nxf_sleep from modules/nextflow/src/main/resources/nextflow/executor/command-run.txt.
- Defaults from AwsBatchConfig (plugins/nf-amazon/src/main/nextflow/cloud/aws/config/AwsBatchConfig.groovy):
  retryMode 'standard', maxTransferAttempts 5, delayBetweenAttempts 10 s, maxParallelTransfers 4;
  AwsOptions.getAwsCli: `<cliPath> --region <region>`.

Only `.command.run`'s skeleton (the order of staging, the script, unstaging) is simplified here:
every line that calls the CLI is Nextflow's own.
"""

from __future__ import annotations

from dataclasses import dataclass

NEXTFLOW_COMMIT = "2aad02f65758dd5d0fb0b1c74786ad52f9d06f1a"


@dataclass(frozen=True)
class AwsBatchOptions:
    cli_path: str
    region: str
    retry_mode: str | None = "standard"  # None: aws.batch.retryMode = 'built-in'
    max_transfer_attempts: int = 5
    delay_between_attempts_s: int = 10
    max_parallel_transfers: int = 4
    storage_class: str = "STANDARD"
    storage_encryption: str = ""  # aws.s3.storageEncryption, e.g. AES256

    @property
    def cli(self) -> str:  # AwsOptions.getAwsCli
        return f"{self.cli_path} --region {self.region}"


def core_lib(o: AwsBatchOptions) -> str:  # BashFunLib.coreLib
    return f"""\
# bash helper functions
nxf_cp_retry() {{
    local max_attempts={o.max_transfer_attempts}
    local timeout={o.delay_between_attempts_s}
    local attempt=0
    local exitCode=0
    while (( $attempt < $max_attempts ))
    do
      if "$@"
        then
          return 0
      else
        exitCode=$?
      fi
      if [[ $exitCode == 0 ]]
      then
        break
      fi
      nxf_sleep $timeout
      attempt=$(( attempt + 1 ))
      timeout=$(( timeout * 2 ))
    done
}}

nxf_parallel() {{
    IFS=$'\\n'
    local cmd=("$@")
    local cpus=$(nproc 2>/dev/null || < /proc/cpuinfo grep '^process' -c)
    local max=$(if (( cpus>{o.max_parallel_transfers} )); then echo {o.max_parallel_transfers}; else echo $cpus; fi)
    local i=0
    local pid=()
    (
    set +u
    while ((i<${{#cmd[@]}})); do
        local copy=()
        for x in "${{pid[@]}}"; do
          # if the process exist, keep in the 'copy' array, otherwise wait on it to capture the exit code
          # see https://github.com/nextflow-io/nextflow/pull/4050
          [[ -e /proc/$x ]] && copy+=($x) || wait $x
        done
        pid=("${{copy[@]}}")

        if ((${{#pid[@]}}>=$max)); then
          nxf_sleep 0.2
        else
          eval "${{cmd[$i]}}" &
          pid+=($!)
          ((i+=1))
        fi
    done
    for p in "${{pid[@]}}"; do
        wait $p
    done
    )
    unset IFS
}}
"""


def s3_lib(o: AwsBatchOptions) -> str:  # S3BashLib.retryEnv + S3BashLib.s3Lib (debug, acl, kms, payer off)
    sse = f"--sse {o.storage_encryption} " if o.storage_encryption else ""
    retry_env = "" if not o.retry_mode else (
        f"# aws cli retry config\nexport AWS_RETRY_MODE={o.retry_mode}\nexport AWS_MAX_ATTEMPTS={o.max_transfer_attempts}")
    cli, sc = o.cli, o.storage_class
    return retry_env + f"""
# aws helper
nxf_s3_upload() {{
    local name=$1
    local s3path=$2
    if [[ "$name" == - ]]; then
      {cli} s3 cp --only-show-errors {sse}--storage-class {sc} - "$s3path"
    elif [[ -d "$name" ]]; then
      {cli} s3 cp --only-show-errors --recursive {sse}--storage-class {sc} "$name" "$s3path/$name"
    else
      {cli} s3 cp --only-show-errors {sse}--storage-class {sc} "$name" "$s3path/$name"
    fi
}}

nxf_s3_download() {{
    local source=$1
    local target=$2
    local file_name=$(basename $1)
    local is_dir=$({cli} s3 ls $source | grep -F "PRE ${{file_name}}/" -c)
    if [[ $is_dir == 1 ]]; then
        {cli} s3 cp --only-show-errors --recursive "$source" "$target"
    else
        {cli} s3 cp --only-show-errors "$source" "$target"
    fi
}}
"""


def stage_inputs(o: AwsBatchOptions, inputs: dict[str, str]) -> str:
    """AwsBatchFileCopyStrategy.getStageInputFilesScript; inputs: target name -> s3:// URI."""
    lines = ["downloads=(true)"]
    for target, uri in inputs.items():
        source = "s3:/" + uri.removeprefix("s3:/")  # Nextflow writes s3:/ + the path /bucket/key
        call = f"nxf_s3_download {source} {target}"
        if o.max_transfer_attempts > 1 and not o.retry_mode:
            call = f"nxf_cp_retry {call}"
        lines.append(f'downloads+=("{call}")')
    lines.append('nxf_parallel "${downloads[@]}"')
    return "\n".join(lines) + "\n"


def unstage_outputs(patterns: list[str], work_dir: str) -> str:  # getUnstageOutputFilesScript
    target = "s3:/" + work_dir.removeprefix("s3:/")
    return f"""\
uploads=()
IFS=$'\\n'
for name in $(eval "ls -1d {' '.join(patterns)}" | sort | uniq); do
    uploads+=("nxf_s3_upload '$name' {target}")
done
unset IFS
nxf_parallel "${{uploads[@]}}"
"""


def command_run(o: AwsBatchOptions, work_dir: str, inputs: dict[str, str], outputs: list[str]) -> str:
    """A `.command.run` with Nextflow's helpers and CLI lines around the task's `.command.sh`."""
    work = "s3:/" + work_dir.removeprefix("s3:/")
    return f"""#!/bin/bash
set -e
nxf_sleep() {{
  sleep $1 2>/dev/null || sleep 1;
}}
{core_lib(o)}
{s3_lib(o)}
echo start | nxf_s3_upload - {work}/.command.begin
NXF_SCRATCH="$(mktemp -d)"
cd "$NXF_SCRATCH"
{stage_inputs(o, inputs)}
{o.cli} s3 cp --only-show-errors {work}/.command.sh .command.sh
set +e
bash -o pipefail .command.sh > .command.out 2> .command.err
status=$?
set -e
printf -- $status | nxf_s3_upload - {work}/.exitcode || true
nxf_s3_upload .command.out {work}
nxf_s3_upload .command.err {work}
[[ $status == 0 ]] || exit $status
{unstage_outputs(outputs, work_dir)}"""


def launch_command(o: AwsBatchOptions, work_dir: str) -> list[str]:  # AwsBatchExecutor.getLaunchCommand/s3Cmd
    sse = f" --sse {o.storage_encryption}" if o.storage_encryption else ""
    aws = f"{o.cli} s3 cp --only-show-errors{sse}"
    cmd = (f'trap "[[ -n \\$pid ]] && kill -TERM \\$pid" TERM; '
           f'trap "{{ ret=$?; {aws} .command.log {work_dir}/.command.log||true; exit $ret; }}" EXIT; '
           f"{aws} {work_dir}/.command.run - | bash > >(tee .command.log) 2>&1 & pid=$!; wait $pid")
    return ["bash", "-o", "pipefail", "-c", cmd]
