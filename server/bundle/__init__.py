"""Loading and activating tenant policies: a tenant folder -> an immutable bundle, the
registry of live bundles, and hot reload of the rules directory."""
