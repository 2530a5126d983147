"""Helpers the tests import: doubles, fixture plugins and builders, one module per concern."""
