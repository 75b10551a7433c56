"""roost: service discovery for Python shops, with a Consul-compatible API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
