"""Small pieces of the API handler on their own: ids, names, field paths, settings."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.api_lab import SETTINGS


def test_job_ids_are_unique_sortable_and_path_safe():
    from labbatch_contract.ids import new_job_id

    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.match(r"^j-[0-9a-z]{26}$", i) for i in ids)
    # Millisecond prefix first: ids made later never sort earlier.
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


@given(st.text(max_size=300))
def test_batch_job_names_always_follow_batchs_rules(requested):
    from labbatch_api.batch_requests import batch_job_name

    name = batch_job_name(requested, "fastq-stats")
    assert re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,127}$", name)


@pytest.mark.parametrize(
    "location, field",
    [
        (("body", "samples", 3, "inputs", 0), "samples[3].inputs[0]"),
        (("body", "parameters", "bad-key", "[key]"), "parameters.bad-key"),
        (("query", "limit"), "limit"),
        (("header", "idempotency-key"), "Idempotency-Key"),
        (("body",), "body"),
    ],
)
def test_field_names_read_as_the_caller_wrote_them(location, field):
    from labbatch_api.handler import field_name

    assert field_name(location) == field


def test_settings_are_checked_against_the_contract():
    from labbatch_contract.settings import SettingsError, load_settings

    assert load_settings({"LABBATCH_SETTINGS": json.dumps(SETTINGS)}).pipelines["align"].parameters["reference"] is None
    with pytest.raises(SettingsError, match="not set"):
        load_settings({})
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_settings({"LABBATCH_SETTINGS": "{"})
    with pytest.raises(SettingsError, match="queues"):
        load_settings({"LABBATCH_SETTINGS": json.dumps({**SETTINGS, "queues": {"gpu": "q"}})})


def test_settings_fit_the_lambda_environment_limit():
    # Lambda allows 4 KB for all variables together; the example lab leaves most of it free.
    assert len(json.dumps(SETTINGS, separators=(",", ":"))) < 2048


def test_misconfigured_deployment_answers_500_in_the_error_shape(lab, monkeypatch):
    from labbatch_api import handler as job_api
    monkeypatch.setenv("LABBATCH_SETTINGS", json.dumps({"lab": "example"}))
    job_api.runtime.cache_clear()

    answer = lab.call("GET", "/pipelines")

    assert answer.status == 500
    assert answer.error["code"] == "misconfigured"
