"""`roost gateway`: server-side discovery as a reverse proxy.

* ``routing``   pure: request -> route (config file, registry opt-ins, Host, path prefix)
* ``outlier``   pure: Envoy-style outlier ejection per instance
* ``upstream``  instances, keep-alive pools, the response parser, the pick (client policies + breakers)
* ``proxy``     the client side of the data path: request parser, limits, pipelining, tunnels
* ``exchange``  one request: routing, the pick, retries, streaming both ways, timeouts, accounting
* ``state``     what one worker knows; metrics and access log hooks; the timeout sweeper
* ``metrics``   counters and latency histograms per route and upstream (``GET /_roost/metrics``)
* ``accesslog`` one JSON line per request, buffered
* ``settings``  the TOML config file
* ``discovery`` follows the catalog (blocking queries, the client's discovery cache)
* ``server``    sockets, worker processes, signals

Reused from the client library (``roost.client``): the push-fed discovery cache and its Consul
strategy, the load-balancing policies, the per-instance circuit breakers, and the backoff.
"""

from roost.gateway.routing import Route, RouteTable

__all__ = ["Route", "RouteTable"]
