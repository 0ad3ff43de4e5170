"""sloscale: autoscale vLLM inference to a declared latency or throughput objective."""

__version__ = "0.1.0"
