"""Metrics, traces, logs and the decision log: what SRE watch and analysts replay."""
