"""Local mode's Batch endpoint as the launcher assembles it: the executor, the REST-JSON API that
botocore's `batch` client speaks over it, and that API's HTTP server on loopback.

The executor knows nothing of HTTP; the API layer knows the executor only through the calls it
makes. The launcher (lab.py) and tests build the three here.
"""

from __future__ import annotations

from labbatch.local.batch.api import BatchApi
from labbatch.local.batch.executor import LocalBatch
from labbatch.local.batch.http_server import BatchHttpServer


class LocalBatchService:
    def __init__(self, batch: LocalBatch, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.batch = batch
        self._http = BatchHttpServer(BatchApi(batch), host, port)

    @property
    def endpoint_url(self) -> str:
        return self._http.url

    def enforce(self, authorizer) -> None:
        """Batch calls are checked against the caller's policies (labbatch.local.iam) from now on."""
        self._http._server.guard = authorizer

    def start(self) -> LocalBatchService:
        self.batch.start()
        self._http.start()
        return self

    def close(self, grace_seconds: float | None = None) -> None:
        """No new calls first, then the executor stops its jobs."""
        self._http.stop()
        self.batch.close(grace_seconds)

    def __enter__(self) -> LocalBatchService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
