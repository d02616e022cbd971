"""Pieces shared by the mock IdP and the broker: config loading, state stores, keys, web glue."""
