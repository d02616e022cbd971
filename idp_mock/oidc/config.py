def parse_oidc_settings(node, issuer, directory):
    return node.value
