"""Kubernetes cluster access: connections, requests, resource types, manifests and their errors."""
