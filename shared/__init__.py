"""Connect's shared package: message contracts, topology, settings, errors and infrastructure helpers."""
