def parse_saml_settings(node, issuer, directory):
    return node.value
