"""Where a spec is deployed beyond this machine. Never imports the local runtime."""
