"""zeroserve.coldstart: model artifacts, the shared content-addressed cache, fetch and preload.

This layer knows files, URIs and bytes only: it never imports an HTTP server, Kubernetes, or the
``zeroserve`` framework above it.
"""
