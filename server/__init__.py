"""Ringfence server: everything with I/O (gRPC, tenants, state, phone facts, telemetry)."""
