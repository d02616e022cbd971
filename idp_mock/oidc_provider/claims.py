"""Which claims about an employee each scope releases (same set in the ID token and at userinfo)."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import scope_to_list

from idp_mock.directory import Employee
from idp_mock.faults import FaultPerson

SCOPE_CLAIMS = {
    "openid": ("sub",),
    "profile": ("name", "preferred_username", "department"),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
}
SCOPES = tuple(SCOPE_CLAIMS)
CLAIMS = tuple(claim for claims in SCOPE_CLAIMS.values() for claim in claims)


def user_claims(employee: Employee, scope: str, *, thin: bool = False) -> dict:
    """The claims `scope` releases (only `sub` for a thin ID token), plus any claims a sign_in_as fault
    set (idp_mock.faults), whatever the scope."""
    values = {
        "sub": employee.subject,
        "name": employee.name,
        "preferred_username": employee.username,
        "department": employee.department,
        "email": employee.email,
        "email_verified": True,  # the directory is the source of truth for work addresses
        "groups": list(employee.groups),
    }
    scopes = ["openid"] if thin else scope_to_list(scope) or []
    released = {claim: values[claim] for granted in scopes for claim in SCOPE_CLAIMS.get(granted, ())}
    if isinstance(employee, FaultPerson):
        released.update({name: value for name, value in employee.claims.items() if not thin or name == "sub"})
    return released
