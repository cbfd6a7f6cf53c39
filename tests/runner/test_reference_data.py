"""Reference data as aligners use it, through the real runner: folders, companion files and the
instance's reference cache (one download per instance, however many jobs want it).

S3 requests go through a counting proxy in front of the emulator, so "downloaded once" is
counted, not inferred from the manifest.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from labbatch_contract.references import CACHE_DIR_NAME
from labbatch_runner.refcache import ReferenceCache
from labbatch_runner.runlog import RunnerLog
from labbatch_runner.s3uri import S3Uri

from .conftest import BUCKET, python_tool

# The tool: writes what it was given (every file under each argument, with its content) as JSON.
SHOW = (
    "import json, os, pathlib, sys\n"
    "out = {}\n"
    "for arg in sys.argv[2:]:\n"
    "    p = pathlib.Path(arg)\n"
    "    files = [p] if p.is_file() else sorted(q for q in p.rglob('*') if q.is_file())\n"
    "    for f in files:\n"
    "        rel = str(f.relative_to(p)) if f != p else f.name\n"
    "        out[arg + '|' + rel] = {'text': f.read_text(), 'writable': bool(f.resolve().stat().st_mode & 0o222),\n"
    "                                'siblings': sorted(x.name for x in f.parent.iterdir())}\n"
    "pathlib.Path(sys.argv[1], 'seen.json').write_text(json.dumps(out))\n"
)


class CountingProxy:
    """Forwards every request to the emulator and counts GETs of object keys; `slow_keys` are
    answered after a pause, so that a second job arrives while the first is downloading."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.gets: Counter[str] = Counter()
        self.slow_keys: dict[str, float] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = urlsplit(self.path).path
                key = unquote(path.partition(f"/{BUCKET}/")[2])
                if self.command == "GET" and key:
                    proxy.gets[key] += 1
                    time.sleep(proxy.slow_keys.get(key, 0))
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                head = self.command == "HEAD"  # its Content-Length is the object's, with no body
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection") and (head or name.lower() != "content-length"):
                        self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def proxy(moto_endpoint: str):
    counting = CountingProxy(moto_endpoint)
    yield counting
    counting.close()


def _key(uri: str) -> str:
    return uri.split("/", 3)[3]


def _seen(lab, prefix: str | None = None) -> dict:
    return json.loads(lab.get((prefix or lab.prefix) + "seen.json"))


def test_a_folder_parameter_is_staged_as_one_directory_with_its_layout(lab):
    index = {"Genome": "g", "SA": "sa", "sjdbList.out.tab": "sj", "exons/info.tab": "ex"}
    for name, text in index.items():
        lab.put(f"refs/star-idx/{name}", text.encode())
    lab.put("refs/star-idx-other/Genome", b"not this one")  # a sibling prefix is not the folder
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    folder = f"s3://{BUCKET}/{lab.tag}/refs/star-idx/"

    result = lab.run(python_tool(SHOW, "{output_dir}", "{param:genome_dir}"),
                     lab.runner_env(inputs=[reads], parameters={"genome_dir": folder}))

    assert result.returncode == 0, result.stdout + result.stderr
    seen = _seen(lab)
    (directory,) = {key.split("|")[0] for key in seen}
    assert directory.endswith(f"/{lab.tag}/refs/star-idx")  # the placeholder is the directory itself
    assert {key.split("|")[1]: value["text"] for key, value in seen.items()} == index
    manifest = lab.manifest()
    staged = {item["uri"]: item for item in manifest["inputs"]}
    assert {uri for uri in staged if "/refs/" in uri} == {folder + name for name in index}
    assert all(staged[folder + name]["used_as"] == ["parameter:genome_dir"] for name in index)


def test_companions_travel_beside_their_file_and_an_optional_one_may_be_absent(lab):
    reference = lab.put("refs/bwa/ref.fa", b">chr1\nACGT\n")
    for suffix in (".amb", ".ann", ".bwt", ".pac", ".sa", ".fai"):
        lab.put(f"refs/bwa/ref.fa{suffix}", f"index {suffix}".encode())
    lab.put("refs/bwa/ref.dict", b"dict")
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    patterns = {"param:reference": [".amb", ".ann", ".bwt", ".pac", ".sa", ".fai", "^.dict", ".gzi?"]}

    result = lab.run(python_tool(SHOW, "{output_dir}", "{param:reference}"),
                     lab.runner_env(inputs=[reads], parameters={"reference": reference},
                                    LABBATCH_SECONDARY_FILES=json.dumps(patterns)))

    assert result.returncode == 0, result.stdout + result.stderr
    (entry,) = _seen(lab).values()
    assert entry["siblings"] == sorted(["ref.fa", "ref.fa.amb", "ref.fa.ann", "ref.fa.bwt", "ref.fa.pac", "ref.fa.sa",
                                        "ref.fa.fai", "ref.dict"])
    assert entry["writable"] is False  # reference data is read-only
    staged = {item["uri"]: item["used_as"] for item in lab.manifest()["inputs"]}
    assert staged[reference[:-len("ref.fa")] + "ref.dict"] == ["companion ^.dict of parameter:reference"]
    assert not any(uri.endswith(".gzi") for uri in staged)


def test_a_missing_required_companion_fails_before_the_tool_runs(lab):
    reference = lab.put("refs/bwa/ref.fa", b">chr1\nACGT\n")
    lab.put("refs/bwa/ref.fa.amb", b"amb")
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    marker = lab.scratch.parent / "tool-ran"

    result = lab.run(python_tool(f"open({str(marker)!r}, 'w')"),
                     lab.runner_env(inputs=[reads], parameters={"reference": reference},
                                    LABBATCH_SECONDARY_FILES=json.dumps({"param:reference": [".amb", ".bwt"]})))

    assert result.returncode == 65
    assert not marker.exists()
    assert lab.manifest()["error"]["message"].startswith(f"input {reference}.bwt: ")


def test_a_reference_is_downloaded_once_per_instance_and_again_when_it_changes(lab, proxy):
    env = {**lab.env, "AWS_ENDPOINT_URL": proxy.url}
    lab.env = env
    for name in ("Genome", "SA", "SAindex"):
        lab.put(f"refs/idx/{name}", f"{name} v1".encode() * 100)
    folder = f"s3://{BUCKET}/{lab.tag}/refs/idx/"
    samples = [lab.put(f"reads/s{i}.fq", f"@r{i}\nA\n+\nI\n".encode()) for i in range(4)]

    for i, reads in enumerate(samples):
        result = lab.run(python_tool(SHOW, "{output_dir}", "{param:index}"),
                         lab.runner_env(inputs=[reads], parameters={"index": folder},
                                        LABBATCH_OUTPUT_PREFIX=f"s3://lab-results/{lab.prefix}{i}/"))
        assert result.returncode == 0, result.stdout + result.stderr
    reference_gets = {key: count for key, count in proxy.gets.items() if "/refs/idx/" in key}
    assert reference_gets == {f"{lab.tag}/refs/idx/{name}": 1 for name in ("Genome", "SA", "SAindex")}
    assert [item["cache"] for item in lab.manifest(f"{lab.prefix}0/")["inputs"] if "/refs/" in item["uri"]] == ["miss"] * 3
    assert [item["cache"] for item in lab.manifest(f"{lab.prefix}3/")["inputs"] if "/refs/" in item["uri"]] == ["hit"] * 3
    # Every job saw the whole index; each sample's own reads were downloaded by it alone.
    assert all(proxy.gets[_key(reads)] == 1 for reads in samples)

    lab.put("refs/idx/SA", b"SA v2")  # a new version: a new ETag
    result = lab.run(python_tool(SHOW, "{output_dir}", "{param:index}"),
                     lab.runner_env(inputs=[samples[0]], parameters={"index": folder},
                                    LABBATCH_OUTPUT_PREFIX=f"s3://lab-results/{lab.prefix}new/"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.gets[f"{lab.tag}/refs/idx/SA"] == 2 and proxy.gets[f"{lab.tag}/refs/idx/Genome"] == 1
    seen = _seen(lab, f"{lab.prefix}new/")
    assert {key.split("|")[1]: value["text"] for key, value in seen.items()}["SA"] == "SA v2"


def test_two_jobs_on_one_instance_share_one_download(lab, proxy):
    lab.env = {**lab.env, "AWS_ENDPOINT_URL": proxy.url}
    reference = lab.put("refs/big.fa", b">chr1\n" + b"ACGT" * 250_000)
    proxy.slow_keys[_key(reference)] = 1.5  # the first download is still running when the second job starts
    reads = [lab.put(f"reads/{n}.fq", b"@r\nA\n+\nI\n") for n in ("a", "b")]

    runners = [
        subprocess.Popen(lab.command(python_tool(SHOW, "{output_dir}", "{param:reference}")),
                         env=lab.runner_env(inputs=[r], parameters={"reference": reference},
                                            LABBATCH_OUTPUT_PREFIX=f"s3://lab-results/{lab.prefix}{n}/"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for n, r in enumerate(reads)
    ]
    outputs = [runner.communicate(timeout=60)[0] for runner in runners]

    assert [runner.returncode for runner in runners] == [0, 0], outputs
    assert proxy.gets[_key(reference)] == 1
    caches = sorted(item["cache"] for n in (0, 1) for item in lab.manifest(f"{lab.prefix}{n}/")["inputs"]
                    if item["uri"] == reference)
    assert caches == ["hit", "miss"]
    assert all(len(entry["text"]) == 6 + 1_000_000 for n in (0, 1) for entry in _seen(lab, f"{lab.prefix}{n}/").values())


def _entry(cache: ReferenceCache, name: str, body: bytes, age: float) -> Path:
    entry = cache.entry(S3Uri("b", f"refs/{name}"), f'"{name}"', len(body))
    (missing,) = cache.acquire([entry])
    entry.part.write_bytes(body)
    cache.commit(entry, None)
    cache.release([entry])
    os.utime(entry.meta, (time.time() - age, time.time() - age))
    return entry.data


def test_eviction_takes_the_least_recently_used_and_never_what_a_job_holds(tmp_path):
    log = RunnerLog()
    cache = ReferenceCache(tmp_path / CACHE_DIR_NAME, log)
    oldest = _entry(cache, "oldest", b"o" * 100, age=300)
    in_use = _entry(cache, "in-use", b"u" * 100, age=200)
    recent = _entry(cache, "recent", b"r" * 100, age=100)
    # A running job holds `in_use` (its lock, shared, as long as its attempt lives).
    user = ReferenceCache(cache.root, log)
    assert user.acquire([user.entry(S3Uri("b", "refs/in-use"), '"in-use"', 100)]) == []

    def used_bytes() -> int:
        return sum(p.stat().st_size for p in cache.root.rglob("*") if p.is_file() and p.suffix not in (".json", ".lock"))

    capacity = 1_000
    free = cache.make_room(capacity - 100, lambda _: capacity - used_bytes(), keep=set())

    assert free >= capacity - 100
    assert not oldest.exists() and in_use.exists() and not recent.exists()
    assert "evicted" in log.text()
    user.release_all()
    assert cache.make_room(capacity, lambda _: capacity - used_bytes(), keep=set()) == capacity
    assert not in_use.exists()


def _plan(**env: str):
    from labbatch_runner.contract import read_contract
    from labbatch_runner.staging import plan_inputs

    base = {"LABBATCH_JOB_ID": "j", "LABBATCH_OUTPUT_PREFIX": "s3://out/jobs/j/", "LABBATCH_INPUTS": "[]"}
    contract = read_contract(["--", "tool"], {**base, **env})
    return {str(item.uri): item for item in plan_inputs(contract, Path("/scratch/inputs"))}


def test_a_companion_is_reference_data_only_when_its_file_is_and_required_if_any_pattern_says_so():
    planned = _plan(LABBATCH_INPUTS=json.dumps(["s3://data/s1.bam"]),
                    LABBATCH_SHARED_INPUTS=json.dumps(["s3://refs/g.fa"]),
                    LABBATCH_PARAMETERS=json.dumps({"ref": "s3://refs/g.fa"}),
                    LABBATCH_SECONDARY_FILES=json.dumps({"inputs": ["^.bai"], "shared_inputs": [".fai?"],
                                                         "param:ref": [".fai"]}))
    # A sample's own .bai is its own input, downloaded per attempt, not kept in the instance's cache.
    assert (planned["s3://data/s1.bai"].reference, planned["s3://data/s1.bai"].required) == (False, True)
    assert planned["s3://refs/g.fa"].reference is True
    # .fai is optional for the shared input and required for the parameter naming the same file: required.
    fai = planned["s3://refs/g.fa.fai"]
    assert (fai.reference, fai.required) == (True, True)
    assert fai.used_as == ("companion .fai? of shared_inputs", "companion .fai? of parameter:ref",
                           "companion .fai of shared_inputs", "companion .fai of parameter:ref")


def test_an_object_called_like_the_caches_own_files_is_cached_like_any_other(lab):
    names = {"meta.json": "m", "meta.json.part": "p", "x.lock": "l", "idx.json": "j"}
    for name, text in names.items():
        lab.put(f"refs/odd/{name}", text.encode())
    folder = f"s3://{BUCKET}/{lab.tag}/refs/odd/"
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    for run in ("first", "second"):
        result = lab.run(python_tool(SHOW, "{output_dir}", "{param:index}"),
                         lab.runner_env(inputs=[reads], parameters={"index": folder},
                                        LABBATCH_OUTPUT_PREFIX=f"s3://lab-results/{lab.prefix}{run}/"))
        assert result.returncode == 0, result.stdout + result.stderr
        seen = _seen(lab, f"{lab.prefix}{run}/")
        assert {key.split("|")[1]: value["text"] for key, value in seen.items()} == names
    assert {item["cache"] for item in lab.manifest(f"{lab.prefix}second/")["inputs"] if "/refs/" in item["uri"]} == {"hit"}


def test_a_name_that_would_be_both_a_file_and_a_folder_fails_before_the_tool_runs(lab):
    lab.put("refs/clash/a/b", b"file")
    lab.put("refs/clash/a/b/c", b"inside")
    reads = lab.put("reads/a.fq", b"@r\nA\n+\nI\n")
    result = lab.run(python_tool("pass"), lab.runner_env(
        inputs=[reads], parameters={"index": f"s3://{BUCKET}/{lab.tag}/refs/clash/"}))
    assert result.returncode == 64
    assert "would have to be both a file and the folder" in lab.manifest()["error"]["message"]


def test_unused_entries_give_way_to_the_room_the_tool_needs_not_only_to_downloads(lab, s3, tmp_path):
    from labbatch_runner.staging import PlannedInput, stage_in
    from labbatch_runner.transfer import make_engine

    log = RunnerLog()
    scratch_dir = tmp_path / "instance"
    cache = ReferenceCache(scratch_dir / CACHE_DIR_NAME, log)
    old = _entry(cache, "old-index", b"o" * 4000, age=600)  # an earlier job's reference, unused now
    reads = lab.put("reads/big.fq", b"r" * 1000)
    uri = S3Uri.parse(reads)
    capacity = 5_500

    def free(_path: Path) -> int:
        used = sum(p.stat().st_size for p in scratch_dir.rglob("*") if p.is_file() and p.suffix not in (".json", ".lock"))
        return capacity - used

    planned = [PlannedInput(uri, scratch_dir / "attempt" / "reads.fq", ("inputs",))]
    # 1,000 bytes to download fit the 1,500 free; the tool's room (x 3) does not, until the old entry goes.
    stage_in(s3, make_engine("boto3", s3), planned, scratch_dir, free_bytes=free, log=log, cache=cache,
             disk_factor=3.0)
    assert not old.exists()
    assert "evicted" in log.text()
