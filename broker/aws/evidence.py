"""The way to AWS, for the "How did I get here?" explanation: what the broker sent to STS and what STS
answered (recorded by `broker.aws.sts` as it happens), the role's trust and permission policies that made it
possible (read from IAM when the story is shown), and the workload path as the instance's metadata service
tells it (devstack/instance_metadata.py `/explain`).

The assertion is a bearer credential for its role until it expires: its signature value is never recorded,
and the request body (with the signature value withheld) is shown only after the assertion's NotOnOrAfter.
Credentials: the access key ID by its last 4 characters, the session token as a fingerprint, the secret
access key never.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from broker.aws.accounts import AccountSessions, broker_session
from broker.core import evidence
from broker.core.access import AccessConfig
from broker.core.evidence import Check, Document, Fact, Section
from broker.core.workloads import WorkloadRole
from sso_common.xmlsign import DS_NAMESPACE

log = logging.getLogger(__name__)

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
AWS_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/"
NS = {"saml": SAML, "ds": DS_NAMESPACE}
WITHHELD = "[signature value withheld]"
STS = "AWS STS AssumeRoleWithSAML"
INSTANCE_TIMEOUT = 2.0
USER_AGENT = "sso-broker explanation"  # how the portal's own token requests are told apart from the app's
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _parse_instant(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


# What the assertion section shows, compiled once.
_ASSERTION_FACTS = {
    label: etree.XPath(path, namespaces=NS)
    for label, path in {
        "Issuer": "./saml:Assertion/saml:Issuer",
        "NameID (persistent)": "./saml:Assertion/saml:Subject/saml:NameID",
        "Audience": "./saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience",
        "Recipient": "./saml:Assertion/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData/@Recipient",
        "NotBefore": "./saml:Assertion/saml:Conditions/@NotBefore",
        "NotOnOrAfter": "./saml:Assertion/saml:Conditions/@NotOnOrAfter",
        "AuthnContextClassRef": ".//saml:AuthnContextClassRef",
        "Signature algorithm": ".//ds:SignatureMethod/@Algorithm",
        "Digest algorithm": ".//ds:DigestMethod/@Algorithm",
        "Signed element (Reference URI)": ".//ds:Reference/@URI",
    }.items()
}
_NOT_ON_OR_AFTER = _ASSERTION_FACTS["NotOnOrAfter"]
ASSERTION_SECTION = "assertion"


def record_assertion(xml: bytes) -> None:
    """The SAML Response the broker minted, as its explanation keeps it: as sent but for the signature value
    (base64, as in the request: `request_parameters`), and until when the assertion is a bearer credential.
    It is decoded for the page only when the explanation is read (`assertion_section`): most issuances never
    are, and the story then holds the Response once instead of twice."""
    record = evidence.recorder()
    if not record.enabled:
        return
    try:
        root = etree.fromstring(xml)  # this function's own tree: the signature value is withheld in place
    except etree.XMLSyntaxError:  # never: the broker built it
        return
    not_after = _NOT_ON_OR_AFTER(root)
    if not_after:
        record.note("assertion_expires", _parse_instant(str(not_after[0])))
    for value in root.iter(f"{{{DS_NAMESPACE}}}SignatureValue"):
        value.text = WITHHELD
    record.note("assertion_withheld_b64", base64.b64encode(etree.tostring(root)).decode())


def assertion_section(withheld_b64: str) -> Section | None:
    """The assertion section of an issuance's story, decoded from the Response it kept (`record_assertion`):
    the AWS attributes STS reads, what identifies and limits the assertion, its signature (not the value), and
    the Response pretty-printed. None when nothing readable was kept."""
    try:  # read back from the state store: python3-saml's hardened parser (no DTD, no entities), as for any XML
        root = OneLogin_Saml2_XML.to_etree(base64.b64decode(withheld_b64, validate=True))
    except (ValueError, etree.XMLSyntaxError):  # DTDForbidden and EntitiesForbidden are ValueErrors
        return None
    section = evidence.SectionRecorder(ASSERTION_SECTION, "The assertion the broker minted")
    for element in root.iter(f"{{{SAML}}}Attribute"):
        name = element.get("Name", "")
        values = [value.text or "" for value in element.findall("saml:AttributeValue", NS)]
        section.fact(name.removeprefix(AWS_ATTRIBUTE), ", ".join(values), name)
    for label, path in _ASSERTION_FACTS.items():
        found = path(root)
        if found:
            first = found[0]
            section.fact(label, first if isinstance(first, str) else (first.text or ""), "the assertion")
    section.fact(
        "SignatureValue", "withheld: with it, the assertion is a bearer credential for the role until it expires"
    )
    etree.indent(root, space="  ")
    section.document(
        "The SAML Response sent to STS",
        "application/xml",
        etree.tostring(root, encoding="unicode"),
        "Decoded and pretty-printed; the signature value is withheld. The Assertion is the signed element "
        "(its Signature's Reference URI is its ID).",
    )
    return section.build()


def record_request(
    *,
    endpoint: str,
    role_arn: str,
    principal_arn: str,
    duration: int,
    assertion_b64: str,
    signed: bool,
    emulator: bool,
) -> None:
    record = evidence.recorder()
    section = record.section("request", "The AssumeRoleWithSAML request")
    if not section.enabled:
        return
    record.note("role_arn", role_arn)
    record.section("answer", "The answer from STS").plan(
        ("STS accepted the assertion", STS, "a valid assertion for a role whose trust policy names the provider")
    )
    section.fact("endpoint", endpoint)
    section.fact("RoleArn", role_arn, "the entitlement")
    section.fact("PrincipalArn", principal_arn, "the account's SAML provider (the broker)")
    section.fact("DurationSeconds", str(duration), "the permission set's session_duration")
    section.fact("SAMLAssertion", f"{len(assertion_b64)} characters of base64, {evidence.fingerprint(assertion_b64)}")
    section.fact(
        "signed with", "the broker's own credentials (SigV4)" if signed else "nothing (AssumeRoleWithSAML is unsigned)"
    )
    if emulator:
        section.fact(
            "note",
            "The AWS emulator (moto) does not check the assertion's signature, issuer, audience or expiry; AWS does. "
            "The broker never relies on it to catch a bad assertion.",
        )
    # The request's parameters, the assertion's signature value withheld: the explanation urlencodes them into
    # the body only when it shows it (broker.core.explain.shown_issuance), not on every issuance.
    record.note(
        "request_parameters",
        {
            "Action": "AssumeRoleWithSAML",
            "Version": "2011-06-15",
            "RoleArn": role_arn,
            "PrincipalArn": principal_arn,
            "SAMLAssertion": record.notes.get("assertion_withheld_b64", ""),
            "DurationSeconds": str(duration),
        },
    )
    section.summary = (
        "The request body carries the assertion, a bearer credential until it expires: it is shown below only "
        "after then, and always with the signature value withheld."
    )


def record_answer(answer: dict[str, Any]) -> None:
    """STS's answer: who the session is, until when; the credentials only by what identifies them."""
    section = evidence.recorder().section("answer", "The answer from STS")
    if not section.enabled:
        return
    user = answer.get("AssumedRoleUser", {})
    credentials = answer.get("Credentials", {})
    section.passed("STS accepted the assertion", received=user.get("Arn", ""), detail="")
    section.fact("AssumedRoleUser Arn", user.get("Arn", ""), "the answer")
    section.fact("AssumedRoleId", user.get("AssumedRoleId", ""), "the answer")
    expiration = credentials.get("Expiration")
    if isinstance(expiration, datetime):
        section.fact("Expiration", expiration.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "the answer")
    for name in ("PackedPolicySize", "SourceIdentity", "Subject", "SubjectType", "Issuer", "Audience", "NameQualifier"):
        if name in answer:
            section.fact(name, str(answer[name]), "the answer")
    key = str(credentials.get("AccessKeyId", ""))
    section.fact("AccessKeyId", f"…{key[-4:]}" if key else "", "the answer (last 4 characters)")
    section.fact("SecretAccessKey", "never shown", "the answer")
    token = credentials.get("SessionToken")
    if isinstance(token, str):
        section.fact("SessionToken", evidence.fingerprint(token), "the answer")


def record_refusal(code: str, message: str) -> None:
    section = evidence.recorder().section("answer", "The answer from STS")
    section.failed("STS accepted the assertion", f"{code}: {message}")


def record_unreachable(reason: str) -> None:
    section = evidence.recorder().section("answer", "The answer from STS")
    section.failed("STS accepted the assertion", reason)


# --- the role's policies, when a story is shown ------------------------------------------------------


def _json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False)


def role_policies(iam: Any, role_name: str) -> Section:
    """The role's trust policy and permission policies as IAM has them now."""
    role = iam.get_role(RoleName=role_name)["Role"]
    documents = [
        Document("Trust policy (who may assume the role)", "application/json", _json(role["AssumeRolePolicyDocument"]))
    ]
    for name in iam.list_role_policies(RoleName=role_name).get("PolicyNames", []):
        policy = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        documents.append(Document(f"Inline permission policy {name}", "application/json", _json(policy)))
    attached = iam.list_attached_role_policies(RoleName=role_name).get("AttachedPolicies", [])
    facts = [Fact("role", role["Arn"], "IAM GetRole")]
    facts += [Fact("managed policy", item["PolicyArn"], "IAM ListAttachedRolePolicies") for item in attached]
    return Section(
        "policies",
        "The role's trust and permission policies",
        summary="As IAM has them now (GetRole, GetRolePolicy, ListAttachedRolePolicies).",
        facts=tuple(facts),
        documents=tuple(documents),
    )


def declared_policies(
    access: AccessConfig, account_id: str, permission_set_name: str, role_arn: str, trust: dict, why: str
) -> Section:
    """The policies `broker provision` gives the role, when IAM cannot be read from here."""
    permission_set = access.permission_sets[permission_set_name]
    documents = [Document("Trust policy (who may assume the role)", "application/json", _json(trust))]
    inline = permission_set.inline_policy(account_id, access.region)
    if inline is not None:
        documents.append(Document("Inline permission policy", "application/json", _json(inline)))
    facts = [Fact("role", role_arn, "broker.core.naming")]
    facts += [Fact("managed policy", arn, "access.yaml") for arn in permission_set.managed_policy_arns]
    return Section(
        "policies",
        "The role's trust and permission policies",
        summary=f"As `broker provision` creates them from access.yaml ({why}).",
        facts=tuple(facts),
        documents=tuple(documents),
    )


def policies_section(
    iam_for: Callable[[str], Any] | None,
    access: AccessConfig,
    *,
    account_id: str,
    permission_set: str,
    role_name: str,
    role_arn: str,
    trust: dict,
) -> Section:
    """The role's policies from IAM, or as declared when IAM cannot be read from here."""
    why = "the portal has no AWS credentials to read IAM with"
    if iam_for is not None:
        try:
            return role_policies(iam_for(account_id), role_name)
        except (BotoCoreError, ClientError, KeyError) as error:
            log.info("the explanation could not read role %s from IAM: %s", role_name, error)
            why = f"IAM could not be read: {type(error).__name__}"
    return declared_policies(access, account_id, permission_set, role_arn, trust, why)


def iam_reader(credentials_file: Path, region: str, endpoint_url: str | None) -> Callable[[str], Any] | None:
    """IAM clients per member account (through the organization access role), when the broker has AWS
    credentials of its own (the demo's emulator keys; a role or profile against AWS); None otherwise."""
    try:
        session = broker_session(credentials_file)
        if session.get_credentials() is None:
            return None
    except BotoCoreError:
        return None
    accounts = AccountSessions(session, region, endpoint_url)
    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 1})

    def iam_for(account_id: str) -> Any:
        return accounts.session(account_id).client("iam", region_name=region, endpoint_url=endpoint_url, config=config)

    return iam_for


# --- the workload path ----------------------------------------------------------------------------------


def _fetch(request: urllib.request.Request) -> bytes:
    with _NO_PROXY.open(request, timeout=INSTANCE_TIMEOUT) as answer:
        return answer.read(1_000_000)


def instance_story(url: str, workloads: tuple[WorkloadRole, ...], region: str) -> Section:
    """The workload path as the instance's metadata service tells it: its token (the one this call used, and
    the app's), the role and its EC2 trust policy, each trust check, the credentials' rotation history."""
    base = url.rstrip("/")
    try:
        token = _fetch(
            urllib.request.Request(
                f"{base}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "60", "User-Agent": USER_AGENT},
            )
        ).decode()
        raw = _fetch(urllib.request.Request(f"{base}/explain", headers={"X-aws-ec2-metadata-token": token}))
        told = json.loads(raw)
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Section(
            "workload",
            "The workload path",
            summary=f"The instance metadata service at {base} could not be read ({getattr(error, 'reason', error)}).",
        )
    return workload_section(told, base, workloads, region, evidence.fingerprint(token))


def workload_section(
    told: dict[str, Any], base: str, workloads: tuple[WorkloadRole, ...], region: str, own_token: str
) -> Section:
    facts = [
        Fact("instance", f"{told.get('instance_id')} in account {told.get('account_id')} ({told.get('region')})"),
        Fact("metadata service", base, "IMDSv2: a session token first (PUT /latest/api/token), then every GET with it"),
        Fact("this page's metadata token", own_token, "PUT /latest/api/token, 60 s"),
    ]
    profile = told.get("instance_profile") or {}
    role = told.get("role") or {}
    if profile:
        facts.append(Fact("instance profile", profile.get("arn", ""), "attached to the instance"))
    if role:
        facts.append(Fact("role", role.get("arn", ""), "the instance profile's role"))
    facts.append(
        Fact(
            "credentials",
            f"{told.get('service')} assumes the role as session {told.get('session_name')} for "
            f"{told.get('session_seconds')} s, new ones when less than {told.get('rotate_before_seconds')} s remain",
        )
    )
    own = [token for token in told.get("tokens", []) if token.get("requested_by") == USER_AGENT]
    if own:
        facts.append(Fact("tokens the portal asked for", f"{len(own)} (to read this), not listed", "IMDSv2"))
    for token in told.get("tokens", []):
        if token.get("requested_by") == USER_AGENT:
            continue
        facts.append(
            Fact(
                "metadata token",
                f"{token.get('fingerprint')}, TTL {token.get('ttl_seconds')} s, issued {_instant(token['issued_at'])}, "
                f"fetched the role's credentials {token.get('credential_fetches', 0)} times",
                f"asked for by {token.get('requested_by') or 'an unnamed client'}",
            )
        )
    for index, issued in enumerate(told.get("credentials", []), 1):
        facts.append(
            Fact(
                f"credentials {index} ({issued.get('kind')})",
                f"access key {issued.get('access_key')}, obtained {_instant(issued['obtained_at'])}, expire "
                f"{_instant(issued['expires_at'])}",
                "the rotation history",
            )
        )
    checks = tuple(
        Check(
            f"{check.get('service')} may assume the role (trust policy) at {_instant(check['time'])}",
            str(check.get("outcome")),
            "devstack instance metadata service (EC2's trust check)",
            expected=f"the trust policy names {check.get('service')} for sts:AssumeRole",
            received="trusted: " + (", ".join(check.get("trusted_services", [])) or "no service"),
        )
        for check in told.get("trust_checks", [])
    )
    documents = []
    if role.get("trust_policy"):
        documents.append(Document("The role's trust policy (EC2)", "application/json", _json(role["trust_policy"])))
    declared = next((w for w in workloads if w.name == role.get("name")), None)
    if declared is not None and told.get("account_id"):
        documents.append(
            Document(
                "The role's permission policy (access.yaml workloads)",
                "application/json",
                _json(declared.inline_policy(str(told["account_id"]), region)),
            )
        )
    summary = (
        "The Employee Directory app holds no key: EC2 assumes the instance profile's role for it, and the "
        "instance metadata service hands the temporary credentials to its SDK, rotated before they expire."
    )
    if told.get("problem"):
        summary += f" The service says: {told['problem']}"
    return Section(
        "workload", "The workload path", summary=summary, facts=tuple(facts), documents=tuple(documents), checks=checks
    )


def declared_workloads(workloads: tuple[WorkloadRole, ...], region: str) -> Section:
    """When no instance is reachable: the roles for workloads access.yaml declares, their trust policies."""
    documents = []
    facts = []
    for workload in workloads:
        facts.append(Fact(workload.name, f"trusted service {workload.trusted_service}", "access.yaml workloads"))
        documents.append(
            Document(f"Trust policy of {workload.name}", "application/json", _json(workload.trust_policy()))
        )
    return Section(
        "workload",
        "The workload path",
        summary="No instance metadata service is configured for the portal (workload_metadata_url): the roles for "
        "workloads as access.yaml declares them.",
        facts=tuple(facts),
        documents=tuple(documents),
    )
