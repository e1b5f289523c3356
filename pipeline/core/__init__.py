"""Shared core: typed values, configuration, the Redis contract, errors, metrics, URIs, shutdown."""
