"""Catalog: owns what users define (connections, tables, jobs, tokens) and serves the REST API."""
