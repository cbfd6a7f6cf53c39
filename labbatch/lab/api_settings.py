"""What both Lambda functions know about their lab: the `LABBATCH_SETTINGS` document.

Built from the lab config model through labbatch_contract.settings, the model the functions
read it with; the CDK stack passes it with CloudFormation tokens for account and Region,
local mode with its own values.
"""

from __future__ import annotations

import copy

from labbatch.lab.api_limits import MAX_BODY_BYTES
from labbatch.lab import instance_types
from labbatch.lab.config import DEFAULT_POOL, Lab, Pipeline, Pool
from labbatch.lab.instance_prices import NoPrice, on_demand_hour
from labbatch_contract import names
from labbatch_contract.settings import SETTINGS_ENV_VAR, Buckets, LabSettings, PipelineSettings

# Lambda allows 4 KB for all of a function's environment variables together.
LAMBDA_ENVIRONMENT_LIMIT = 4096
SETTINGS_VARIABLE = SETTINGS_ENV_VAR
_LONGEST_ACCOUNT = "0" * 12
# Set by local mode only (labbatch/local/lab.py), never in a deployed lab's settings.
_PIPELINE_FIELDS_NOT_FROM_LAB = frozenset({"local"})


class SettingsTooLarge(ValueError):
    pass


def one_pool_lab(lab: Lab) -> bool:
    """A lab whose one pool is `default` without GPUs: its settings carry no `pools` (as before pools)."""
    return list(lab.pools) == [DEFAULT_POOL] and not lab.pools[DEFAULT_POOL].gpu


def _pool(lab: Lab, name: str, pool: Pool, *, shapes: bool) -> dict:
    queues = {q: names.pool_job_queue(lab.name, name, q) for q, vcpus in pool.queue_max_vcpus.items()
              if vcpus > 0}
    document = {
        "queues": queues,
        "queue_max_vcpus": {q: pool.queue_max_vcpus[q] for q in queues},
        "scratch_gib": pool.scratch.size_gib,
        "limits": {k: v for k, v in pool.job_limits.items() if k != "scratch_gib"},
    }
    if shapes:
        document["gpu"] = pool.gpu
        # Priced in the lab's Region (the default Region's table when it names none): what
        # matters is the order of the pools, which is the same in every Region LabBatch prices.
        try:
            document["shapes"] = sorted({(t.vcpus, t.job_memory_mib, t.gpus, round(on_demand_hour(t, lab.region), 4))
                                         for t in instance_types.expand(pool.instance_types)})
        except NoPrice as exc:  # placement compares pools by price: a guessed price would misplace jobs
            raise NoPrice(f"compute.pools.{name}.instance_types: {exc}: placement compares pools by price, so "
                          "list types priced in this Region or add a checked figure there") from None
    return document


def _document(lab: Lab, account: str, region: str) -> dict:
    first_name, first = next(iter(lab.pools.items()))
    multi = not one_pool_lab(lab)
    return {
        "lab": lab.name,
        "table": names.ledger_table(lab.name),
        "buckets": {kind: names.bucket(lab.name, kind, account, region)
                    for kind in ("inputs", "references", "results")},
        **_pool(lab, first_name, first, shapes=False),
        "max_body_bytes": MAX_BODY_BYTES,
        "pipelines": {name: _pipeline(lab, name, p) for name, p in lab.pipelines.items()},
        "tes": _tes(lab, account, region),
        "pools": {name: _pool(lab, name, pool, shapes=True) for name, pool in lab.pools.items()} if multi else {},
    }


def _pipeline(lab: Lab, name: str, pipeline: Pipeline) -> dict:
    """Every field PipelineSettings declares: the lab file's own where the names match, the
    rest computed here. A field neither names nor computes fails the synth, never vanishes."""
    computed = {
        "job_definition": names.job_definition(lab.name, name),
        "shared_inputs": pipeline.shared_inputs,  # what the command's placeholders ask of shared inputs
    }
    document = {}
    for field in PipelineSettings.model_fields:
        if field in _PIPELINE_FIELDS_NOT_FROM_LAB:
            continue
        if field in computed:
            document[field] = computed[field]
        elif field in Pipeline.model_fields:
            document[field] = copy.deepcopy(getattr(pipeline, field))
        else:
            raise ValueError(f"PipelineSettings.{field} is neither a field of the lab file's pipelines "
                             "(labbatch.lab.config.Pipeline) nor computed in labbatch/lab/api_settings.py:_pipeline")
    return document


def _tes(lab: Lab, account: str, region: str) -> dict:
    """Off (the defaults) unless the lab allows images; then what a task's job definition needs.
    The roles are the compute stack's, found by the names it gives them (names.job_role)."""
    if not lab.tes.allowed_images:
        return {}
    return {
        "allowed_images": list(lab.tes.allowed_images),
        "job_role_arn": f"arn:aws:iam::{account}:role/{names.job_role(lab.name)}",
        "execution_role_arn": f"arn:aws:iam::{account}:role/{names.job_execution_role(lab.name)}",
        "log_group": names.job_log_group(lab.name),
        "architecture": lab.compute.architecture,
        "recovery": lab.tes.recovery,
    }


def lab_settings(lab: Lab, account: str, region: str) -> LabSettings:
    """The settings model. Validated with the longest account and Region there are; the
    buckets then take the given ones, which in a stack are CloudFormation tokens (longer as
    text than any real name, so they cannot pass the name-length check themselves)."""
    validated = LabSettings.model_validate(_document(lab, _LONGEST_ACCOUNT, "x" * names.LONGEST_REGION))
    document = _document(lab, account, region)
    update = {"buckets": Buckets.model_construct(**document["buckets"])}
    if document["tes"]:
        update["tes"] = validated.tes.model_copy(update={k: document["tes"][k] for k in ("job_role_arn", "execution_role_arn")})
    return validated.model_copy(update=update)


def handler_settings(lab: Lab, account: str, region: str) -> dict:
    """The document as the functions receive it (defaults left out to spare Lambda's 4 KB)."""
    return lab_settings(lab, account, region).model_dump(mode="json", exclude_defaults=True)


def check_size(lab: Lab) -> int:
    """Bytes of the settings at their longest (12-digit account, longest Region); raise if too big."""
    rendered = lab_settings(lab, _LONGEST_ACCOUNT, "x" * names.LONGEST_REGION).to_environment()
    # Leave room for the handler's other variables (service name, log level, ...).
    budget = LAMBDA_ENVIRONMENT_LIMIT - 512
    if len(rendered) > budget:
        raise SettingsTooLarge(
            f"lab {lab.name}: the API handler's settings take {len(rendered):,} bytes, over the {budget:,} "
            f"that Lambda's 4 KB environment leaves (shorten pipeline descriptions or parameter defaults, or name "
            f"fewer instance types in compute.pools: each pool lists its types' shapes for placement)")
    return len(rendered)
