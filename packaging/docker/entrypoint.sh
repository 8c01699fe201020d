#!/bin/sh
# weir-entrypoint: starts weir-broker in a container (Dockerfile, docker-compose.yml,
# docs/deploy.md) from environment variables, as PID 1's replacement (exec), so SIGTERM
# reaches the broker and stops it gracefully.
#
#   WEIR_DATA_DIR         data dir (default /var/lib/weir, the image's volume)
#   WEIR_LISTEN           gRPC address (default 0.0.0.0:9292)
#   WEIR_METRICS_LISTEN   Prometheus metrics address (default 0.0.0.0:9293; empty: off)
#   WEIR_CONFIG           a weir.toml to read (flags from the variables above win over it)
#   WEIR_CLUSTER          cluster mode: "1=weir-0.weir:9292,2=weir-1.weir:9292,3=..."
#   WEIR_NODE_ID          this member's id; when unset in cluster mode, the ordinal at the
#                         end of the host name plus one (a StatefulSet's pod weir-0 is node 1)
#   WEIR_AUTH             "true": users and ACLs (--auth)
#
# Arguments are passed on to weir-broker (`docker run weir --fsync always`); a first argument
# that is not a flag is run instead (`docker run weir weir --help`).
set -eu

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

fail() {
    echo "weir-entrypoint: $*" >&2
    exit 64
}

set -- --data-dir "${WEIR_DATA_DIR:-/var/lib/weir}" --listen "${WEIR_LISTEN:-0.0.0.0:9292}" "$@"
metrics="${WEIR_METRICS_LISTEN-0.0.0.0:9293}"
if [ -n "$metrics" ]; then
    set -- --metrics-listen "$metrics" "$@"
fi
if [ -n "${WEIR_CONFIG:-}" ]; then
    set -- --config "$WEIR_CONFIG" "$@"
fi
case "${WEIR_AUTH:-false}" in
    true) set -- --auth "$@" ;;
    false) ;;
    *) fail "WEIR_AUTH must be true or false, not '${WEIR_AUTH}'" ;;
esac
if [ -n "${WEIR_CLUSTER:-}" ]; then
    node="${WEIR_NODE_ID:-}"
    if [ -z "$node" ]; then
        host="${HOSTNAME:-$(hostname)}"
        ordinal="${host##*-}"
        case "$ordinal" in
            '' | *[!0-9]*)
                fail "set WEIR_NODE_ID, or run with a host name ending in -N (a StatefulSet's pods): '$host' has none"
                ;;
        esac
        node=$((ordinal + 1))
    fi
    set -- --node-id "$node" --cluster "$WEIR_CLUSTER" "$@"
fi

exec weir-broker "$@"
