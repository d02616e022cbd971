"""The pure core of the broker, after an upstream login and before AWS: the `Identity`, the access
config, the entitlement mapping, issuance (the one place that checks and audits every credential),
the audit records and portal sessions. No HTTP and no AWS calls here."""
