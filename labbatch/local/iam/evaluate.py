"""Policy evaluation as AWS documents it, for the statements LabBatch's templates contain.

Within one account (IAM User Guide, "Policy evaluation logic"): an explicit Deny in any applicable
policy wins; otherwise the request is allowed when an identity policy or a resource policy that
names the principal allows it; otherwise it is implicitly denied. A KMS key is the exception: its
key policy must allow the call, and a key policy statement whose principal is the account (its
root) only delegates to IAM, so an identity policy must allow it as well (KMS Developer Guide,
"Key policies").

moto's own evaluator (`moto.iam.access_control`) is not used for the decision: it treats a
condition it does not know as met, a failed condition on an Allow as an explicit Deny, has no
NotResource, and matches `.` in an ARN as any character. Its AWS managed policy documents are
used (templates.managed_policy). Anything here that meets a policy element or condition operator
it does not implement raises Unsupported: a policy local mode cannot evaluate is never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from labbatch.local.iam.templates import Policy


class Unsupported(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    name: str  # local mode's name for it: api-handler, job-role, scientist, ...
    arn: str
    account: str
    tags: dict[str, str] = field(default_factory=dict)
    policies: tuple[Policy, ...] = ()


@dataclass(frozen=True)
class Request:
    action: str  # service:Operation
    resource: str  # an ARN, or "*"
    context: dict[str, Any] = field(default_factory=dict)  # condition keys -> str or list of str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Which statements decided it: "<policy name>#<index>" plus ` (Sid)` when it has one.
    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()
    reason: str = ""


@lru_cache(maxsize=4096)
def _glob(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    # IAM's wildcards are `*` and `?` only; everything else is literal (fnmatch's [] is not IAM's).
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if case_insensitive else re.DOTALL)


def _matches(patterns: Any, value: str, *, case_insensitive: bool) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return any(_glob(str(p), case_insensitive).match(value) for p in patterns)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


_OPERATORS = {
    "StringEquals": lambda want, have: want == have,
    "StringNotEquals": lambda want, have: want == have,
    "StringEqualsIgnoreCase": lambda want, have: want.lower() == have.lower(),
    "StringLike": lambda want, have: bool(_glob(want, False).match(have)),
    "StringNotLike": lambda want, have: bool(_glob(want, False).match(have)),
    "ArnEquals": lambda want, have: want == have,
    "ArnLike": lambda want, have: bool(_glob(want, False).match(have)),
    "ArnNotEquals": lambda want, have: want == have,
    "ArnNotLike": lambda want, have: bool(_glob(want, False).match(have)),
    "Bool": lambda want, have: str(want).lower() == str(have).lower(),
}
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, Any]) -> bool:
    """Every operator holds (AND), every key within it holds (AND), any listed value matches (OR).
    A key the request lacks fails a positive operator and passes a negated one, unless `IfExists`."""
    for operator, keys in condition.items():
        if ":" in operator:
            raise Unsupported(f"condition operator {operator} (set operators) is not evaluated by local mode")
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        for key, wanted in keys.items():
            present = _lookup(context, key)
            if base == "Null":
                if (present is None) != (str(_as_list(wanted)[0]).lower() == "true"):
                    return False
                continue
            if base not in _OPERATORS:
                raise Unsupported(f"condition operator {operator} is not evaluated by local mode")
            if present is None:
                if if_exists or base in _NEGATED:
                    continue
                return False
            match = any(_OPERATORS[base](str(w), str(h)) for w in _as_list(wanted) for h in _as_list(present))
            if match == (base in _NEGATED):
                return False
    return True


def _lookup(context: dict[str, Any], key: str) -> Any:
    # Condition key names are case-insensitive; tag keys after the slash keep their case.
    prefix, slash, rest = key.partition("/")
    for have, value in context.items():
        hp, hs, hr = have.partition("/")
        if hp.lower() == prefix.lower() and hs == slash and hr == rest:
            return value
    return None


def _principal_matches(element: Any, principal: Principal) -> tuple[bool, bool]:
    """(applies to the principal, names the principal itself) for a resource policy's Principal.
    The account (its root or its id) applies to every principal of the account but grants nothing
    by itself: it delegates to IAM."""
    if element == "*":
        return True, True
    if not isinstance(element, dict):
        raise Unsupported(f"Principal {element!r} is not evaluated by local mode")
    for kind, values in element.items():
        if kind != "AWS":
            continue  # service principals (events, logs, budgets) are never one of local mode's callers
        for value in _as_list(values):
            if value == "*" or value == principal.arn:
                return True, True
            if value in (f"arn:aws:iam::{principal.account}:root", principal.account):
                return True, False
    return False, False


def _statement_applies(statement: dict[str, Any], request: Request, principal: Principal | None) -> tuple[bool, bool]:
    """(applies, grants directly). `principal` is given for resource policies."""
    for element in statement:
        if element not in ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition", "Principal"):
            raise Unsupported(f"policy element {element} is not evaluated by local mode")
    if "Action" in statement:
        if not _matches(statement["Action"], request.action, case_insensitive=True):
            return False, False
    elif "NotAction" in statement:
        if _matches(statement["NotAction"], request.action, case_insensitive=True):
            return False, False
    else:
        raise Unsupported("a statement without Action or NotAction")
    if "Resource" in statement:
        if not _matches(statement["Resource"], request.resource, case_insensitive=False):
            return False, False
    elif "NotResource" in statement:
        if _matches(statement["NotResource"], request.resource, case_insensitive=False):
            return False, False
    direct = True
    if principal is not None:
        applies, direct = _principal_matches(statement.get("Principal"), principal)
        if not applies:
            return False, False
    if not condition_holds(statement.get("Condition", {}), request.context):
        return False, False
    return True, direct


def _label(policy: Policy, index: int, statement: dict) -> str:
    return f"{policy.name}#{index}" + (f" ({statement['Sid']})" if statement.get("Sid") else "")


def _scan(policies: Iterable[Policy], request: Request, principal: Principal | None):
    allows, delegations, denies = [], [], []
    for policy in policies:
        for index, statement in enumerate(policy.statements()):
            applies, direct = _statement_applies(statement, request, principal)
            if not applies:
                continue
            label = _label(policy, index, statement)
            if statement["Effect"] == "Deny":
                denies.append(label)
            elif direct:
                allows.append(label)
            else:
                delegations.append(label)
    return allows, delegations, denies


def evaluate(principal: Principal, request: Request, resource_policies: Iterable[Policy] = (),
             *, key_policy: bool = False) -> Decision:
    """Whether `principal` may make `request`. `resource_policies` are the policies on the resource
    (bucket policy, key policy, API policy); `key_policy` says they are a KMS key's."""
    context = {"aws:PrincipalArn": principal.arn, "aws:PrincipalAccount": principal.account,
               **{f"aws:PrincipalTag/{k}": v for k, v in principal.tags.items()}, **request.context}
    request = Request(request.action, request.resource, context)
    identity_allows, _, identity_denies = _scan(principal.policies, request, None)
    resource_policies = list(resource_policies)
    resource_allows, resource_delegates, resource_denies = _scan(resource_policies, request, principal)
    denies = identity_denies + resource_denies
    if denies:
        return Decision(False, denied_by=tuple(denies), reason="explicitly denied")
    if key_policy:
        if resource_allows:
            return Decision(True, allowed_by=tuple(resource_allows))
        if resource_delegates and identity_allows:
            return Decision(True, allowed_by=tuple(resource_delegates + identity_allows))
        why = ("the key policy allows it only through IAM, and no identity policy allows it" if resource_delegates
               else "the key policy does not allow it")
        return Decision(False, reason=why)
    allowed = identity_allows + resource_allows
    if allowed:
        return Decision(True, allowed_by=tuple(allowed))
    return Decision(False, reason="no identity-based or resource-based policy allows it")
