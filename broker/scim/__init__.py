"""The SCIM 2.0 service provider of the broker (RFC 7643, RFC 7644): an identity provider provisions its people
and groups into the broker's directory, at `<portal>/scim/v2`.

Built on scim2-server (the protocol: routing, validation, PATCH, ETags, errors in SCIM's format) over
scim2-models; this package supplies what is the broker's own:
- `provider`: what the service announces (Users with the enterprise extension, Groups; PATCH, filtering,
  ETags; no bulk, sorting or password changes) and its limits;
- `filters`: the filters it evaluates (eq on userName, externalId, displayName and id, `and`, a group's
  `members[value eq ...]`), translated into typed store queries: a filter never becomes query text;
- `storage`: Users and Groups kept in the `DirectoryStore`, one storage per upstream, with the upstream's
  trust boundary applied (its group mapping for every pushed group; its email domains for the address
  the broker keeps), and the consequences of a write (disabling or deleting a person revokes them);
- `endpoint`: bearer-token authentication (one token per upstream) and one request in, one response out,
  with no web framework (broker/http/scim.py is the Flask glue).
"""
