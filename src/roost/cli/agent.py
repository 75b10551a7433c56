"""`roost agent`: run the registry agent."""

from __future__ import annotations

import argparse
import logging

from roost.config import DEFAULT_DNS_ADDR, DEFAULT_HTTP_ADDR, AgentConfig, env, env_list


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="run the registry agent (HTTP API, DNS, health checks)")
    defaults = AgentConfig()
    p.add_argument(
        "--http-addr",
        default=env("ROOST_HTTP_ADDR", DEFAULT_HTTP_ADDR),
        help="HTTP API listen address (env ROOST_HTTP_ADDR; default %(default)s)",
    )
    p.add_argument(
        "--dns-addr",
        default=env("ROOST_DNS_ADDR", DEFAULT_DNS_ADDR),
        help="DNS listen address, udp and tcp; '' turns DNS off (env ROOST_DNS_ADDR; default %(default)s)",
    )
    p.add_argument(
        "--data-dir",
        default=env("ROOST_DATA_DIR", defaults.data_dir),
        help="where the SQLite store keeps its data (env ROOST_DATA_DIR; default %(default)s)",
    )
    p.add_argument(
        "--store",
        default=env("ROOST_STORE", "sqlite"),
        help="sqlite (default), sqlite:///path, memory, or etcd://host:port[,host:port...] (env ROOST_STORE)",
    )
    p.add_argument(
        "--node",
        dest="node_name",
        default=env("ROOST_NODE_NAME", defaults.node_name),
        help="this agent's node name (env ROOST_NODE_NAME; default the host name)",
    )
    p.add_argument(
        "--advertise",
        dest="node_address",
        default=env("ROOST_ADVERTISE_ADDR", "127.0.0.1"),
        help="the node address reported in answers (default %(default)s)",
    )
    p.add_argument("--datacenter", default=env("ROOST_DATACENTER", "dc1"), help="default %(default)s")
    p.add_argument(
        "--log-level",
        default=env("ROOST_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="default %(default)s",
    )
    dns = p.add_argument_group("DNS")
    dns.add_argument(
        "--domain", default=env("ROOST_DOMAIN", "consul."), help="DNS domain (default %(default)s)"
    )
    dns.add_argument("--alt-domain", default=env("ROOST_ALT_DOMAIN", ""), help="an alternative DNS domain")
    dns.add_argument(
        "--dns-only-passing", action="store_true", help="leave instances with a warning check out of DNS"
    )
    dns.add_argument(
        "--dns-service-ttl",
        action="append",
        default=[],
        metavar="[NAME=]SECONDS",
        help="TTL of service answers (default 0); NAME=SECONDS for one service (NAME may end in *)",
    )
    dns.add_argument("--dns-node-ttl", type=int, default=0, help="TTL of node answers in seconds (default 0)")
    dns.add_argument("--dns-negative-ttl", type=int, default=0, help="TTL of negative answers (SOA minimum)")
    dns.add_argument(
        "--dns-recursor",
        action="append",
        default=list(env_list("ROOST_DNS_RECURSORS")),
        help="forward names outside our zones to this resolver (repeatable; default: REFUSED)",
    )
    dns.add_argument(
        "--k8s-zone",
        default=env("ROOST_K8S_ZONE", ""),
        help="answer Kubernetes-style names in this zone, e.g. cluster.local (default off)",
    )
    dns.add_argument("--k8s-namespace", default="default", help="namespace of Kubernetes-style names")
    checks = p.add_argument_group("health checks")
    checks.add_argument(
        "--check-allow-cidr",
        action="append",
        default=list(env_list("ROOST_CHECK_ALLOW_CIDRS")),
        help="only probe HTTP/TCP/gRPC targets in this network (repeatable; default: any address)",
    )
    checks.add_argument(
        "--enable-script-checks",
        action="store_true",
        help="allow checks that run commands (off by default, as in Consul)",
    )
    checks.add_argument(
        "--flap-threshold",
        type=int,
        default=defaults.flap_threshold,
        help="status flips within --flap-window that mark a check flapping (default %(default)s)",
    )
    checks.add_argument(
        "--flap-window", type=float, default=defaults.flap_window, help="seconds (default %(default)s)"
    )
    etcd = p.add_argument_group("etcd store")
    etcd.add_argument(
        "--etcd-lease-ttl",
        type=float,
        default=defaults.etcd_lease_ttl,
        help="seconds before a dead agent's registrations expire (default %(default)s)",
    )
    etcd.add_argument("--etcd-ca-file", default=env("ROOST_ETCD_CA_FILE", ""))
    etcd.add_argument("--etcd-cert-file", default=env("ROOST_ETCD_CERT_FILE", ""))
    etcd.add_argument("--etcd-key-file", default=env("ROOST_ETCD_KEY_FILE", ""))
    etcd.add_argument("--etcd-username", default=env("ROOST_ETCD_USERNAME", ""))
    etcd.add_argument("--etcd-password", default=env("ROOST_ETCD_PASSWORD", ""))
    etcd.add_argument(
        "--etcd-prefix",
        default=env("ROOST_ETCD_PREFIX", ""),
        help="key prefix: instances under <prefix>/services/, checks under <prefix>/roost/ (default none)",
    )
    p.set_defaults(func=run)


def service_ttls(values: list[str]) -> tuple[int, tuple[tuple[str, int], ...]]:
    """`--dns-service-ttl 5 --dns-service-ttl web=30 --dns-service-ttl 'api-*=10'` -> (5, (...))."""
    default, per_name = 0, []
    for value in values:
        name, sep, seconds = value.rpartition("=")
        if not seconds.isdigit() or (sep and not name):
            raise SystemExit(f"roost agent: --dns-service-ttl wants SECONDS or NAME=SECONDS, got {value!r}")
        if sep:
            per_name.append((name.lower(), int(seconds)))
        else:
            default = int(seconds)
    return default, tuple(per_name)


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        http_addr=args.http_addr,
        dns_addr=args.dns_addr,
        data_dir=args.data_dir,
        store=args.store,
        node_name=args.node_name,
        node_address=args.node_address,
        datacenter=args.datacenter,
        log_level=args.log_level,
        domain=args.domain,
        alt_domain=args.alt_domain,
        dns_only_passing=args.dns_only_passing,
        dns_service_ttl=service_ttls(args.dns_service_ttl)[0],
        dns_service_ttls=service_ttls(args.dns_service_ttl)[1],
        dns_node_ttl=args.dns_node_ttl,
        dns_negative_ttl=args.dns_negative_ttl,
        dns_recursors=tuple(args.dns_recursor),
        k8s_zone=args.k8s_zone,
        k8s_namespace=args.k8s_namespace,
        check_allow_cidrs=tuple(args.check_allow_cidr),
        enable_script_checks=args.enable_script_checks,
        flap_threshold=args.flap_threshold,
        flap_window=args.flap_window,
        etcd_lease_ttl=args.etcd_lease_ttl,
        etcd_ca_file=args.etcd_ca_file,
        etcd_cert_file=args.etcd_cert_file,
        etcd_key_file=args.etcd_key_file,
        etcd_username=args.etcd_username,
        etcd_password=args.etcd_password,
        etcd_prefix=args.etcd_prefix,
    )


def run(args: argparse.Namespace) -> int:
    from roost.agent import run_agent

    config = config_from_args(args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_agent(config)
    return 0
