"""The local sandbox: everything needed to run sloscale end to end on one machine without a cluster.

A real Prometheus (`prometheus`), vLLM-shaped metrics (`vllm_metrics`), emulated vLLM pods, the
Kubernetes API emulator and a load generator live here. Nothing in this package is imported by the
operator's production modules; the operator only ever sees them over HTTP, as it would see a real
cluster.
"""
