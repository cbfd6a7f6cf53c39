"""Who may call the local API, decided as API Gateway decides it before the integration runs:
IAM authorization (a SigV4 signature by the lab's credentials, then, with strict IAM, the
signer's execute-api:Invoke), or, on the TES subtree, the REQUEST token authorizer.

A request that may not pass is a Refusal (http_front.py writes it) in the API's one error shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from labbatch_contract import tokens
from labbatch.local.apigateway.http_front import Refusal
from labbatch.local.signing import ReceivedRequest, SignatureRejected, SigV4Verifier

# A token (or None) -> (its ledger record, "ok") or (None, why not): labbatch_contract.tokens.check.
TokenCheck = Callable[[str | None], tuple[Any, str]]
# (method, path) -> None when the signer may invoke it, else why not (AccessDenied's message).
InvokeCheck = Callable[[str, str], str | None]


class Authorization:
    def __init__(self, *, credentials: tuple[str, str], region: str, token_check: TokenCheck | None,
                 invoke_check: InvokeCheck | None) -> None:
        access_key_id, secret_access_key = credentials
        # With TES on, /ga4gh/... is the deployed API's token subtree (a Lambda authorizer, no SigV4):
        # the same check, from labbatch_contract.tokens, runs here.
        self._token_check = token_check
        # Strict IAM: execute-api:Invoke for the signer, by its policies and the API's resource policy.
        self._invoke_check = invoke_check
        self._verifier = SigV4Verifier(access_key_id=access_key_id, secret_access_key=secret_access_key, region=region)

    def authorize(self, request: ReceivedRequest) -> tuple[str | None, dict[str, Any] | None]:
        """(the signer's access key, None) or, on the token subtree, (None, the authorizer's
        context); raises Refusal otherwise."""
        if self._token_check is not None and tokens.is_tes_path(unquote(request.raw_path)):
            return None, self._authorize_token(request.header("Authorization"))
        try:
            access_key = self._verifier.verify(request)
        except SignatureRejected as rejected:
            # In AWS, IAM authorization answers 403 {"message": ...}; LabBatch keeps its API's one
            # error shape here too, so clients parse a single kind of error body.
            raise Refusal(403, "forbidden", rejected.message, **rejected.details) from None
        why_not = self._invoke_check(request.method, unquote(request.raw_path)) if self._invoke_check else None
        if why_not is not None:
            raise Refusal(403, "forbidden", why_not)
        return access_key, None

    def _authorize_token(self, header: str | None) -> dict[str, Any]:
        """API Gateway's answers for a REQUEST authorizer: 401 without the identity source (the
        Authorization header), 403 when the authorizer denies."""
        if not header:
            raise Refusal(401, "unauthorized", "Send a LabBatch token: Authorization: Bearer <token> "
                          "(or Basic with the token as password); `labbatch token create` makes one")
        assert self._token_check is not None
        record, why = self._token_check(tokens.from_authorization(header))
        if record is None:
            raise Refusal(403, "forbidden", f"The token is not accepted ({why}): `labbatch token list` shows the "
                          "lab's tokens; create a new one with `labbatch token create`")
        owner = str(record["owner"])
        return {"principalId": owner, tokens.CONTEXT_OWNER: owner,
                tokens.CONTEXT_TOKEN_ID: str(record["token_id"]), "integrationLatency": 0}
