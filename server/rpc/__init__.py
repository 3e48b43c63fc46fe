"""The gRPC surface: servicers, the shared request path, validation, auth and errors."""
