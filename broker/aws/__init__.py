"""Where credentials are minted, and what makes AWS accept them: the signed SAML assertion the broker
makes as the accounts' identity provider (`assertion`), the AssumeRoleWithSAML exchange (`sts`),
sessions in member accounts (`accounts`) and idempotent provisioning of providers and roles."""
