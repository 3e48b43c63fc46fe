"""Generated gRPC code and typed stubs for ringfence.v1 (see generate.py; do not edit)."""
