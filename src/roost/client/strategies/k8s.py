"""Kubernetes DNS: ``<svc>.<namespace>.svc.<zone>``, with SRV for a named port.

The namespace comes from the service-account file, then ``NAMESPACE``, then ``default``
(:func:`roost.config.kubernetes_namespace`). With ``port_name`` set, the SRV record
``_<port>._tcp.<svc>.<ns>.svc.<zone>`` gives every ready endpoint's port (headless services list
each pod); without it, A records and ``default_port`` are used.
"""

from __future__ import annotations

from collections.abc import Sequence

from roost.client.strategies.dns import DnsStrategy
from roost.config import kubernetes_namespace


class KubernetesStrategy(DnsStrategy):
    """Find services through cluster DNS. Arguments not listed are those of :class:`DnsStrategy`."""

    name = "kubernetes"

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        namespace: str | None = None,
        zone: str = "cluster.local",
        port_name: str = "",
        protocol: str = "tcp",
        default_port: int = 80,
        min_refresh: float = 1.0,
        max_refresh: float = 30.0,
        timeout: float = 2.0,
    ) -> None:
        self.namespace = namespace or kubernetes_namespace()
        base = f"{{service}}.{self.namespace}.svc.{zone.strip('.')}"
        super().__init__(
            nameservers,
            srv_name=f"_{port_name}._{protocol}.{base}" if port_name else "",
            a_name=base,
            default_port=default_port,
            min_refresh=min_refresh,
            max_refresh=max_refresh,
            timeout=timeout,
        )
