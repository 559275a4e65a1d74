#!/bin/sh
# One-shot job of the temporal-admin-tools service: waits for the namespace created by
# temporalio/auto-setup, then registers metalplane's custom search attributes (all Keyword).
# Idempotent: attributes already registered as Keyword are left alone; an attribute registered
# with another type is an error.
#
# Environment: TEMPORAL_ADDRESS (read by the temporal CLI), TEMPORAL_NAMESPACE,
# METALPLANE_SEARCH_ATTRIBUTES (space separated names).
set -eu

: "${TEMPORAL_ADDRESS:?}"
: "${TEMPORAL_NAMESPACE:?}"
: "${METALPLANE_SEARCH_ATTRIBUTES:?}"
WAIT_SECONDS="${WAIT_SECONDS:-180}"

waited=0
until temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        echo "namespace $TEMPORAL_NAMESPACE not available after ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    echo "waiting for namespace $TEMPORAL_NAMESPACE at $TEMPORAL_ADDRESS"
    sleep 2
    waited=$((waited + 2))
done

registered() {
    temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE"
}

for name in $METALPLANE_SEARCH_ATTRIBUTES; do
    listing="$(registered)"
    if printf '%s\n' "$listing" | grep -Eq "(^|[[:space:]])${name}[[:space:]]+Keyword([[:space:]]|$)"; then
        echo "search attribute $name already registered"
        continue
    fi
    if printf '%s\n' "$listing" | grep -Eq "(^|[[:space:]])${name}([[:space:]]|$)"; then
        echo "search attribute $name exists with a type other than Keyword" >&2
        exit 1
    fi
    temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
        --name "$name" --type Keyword
    echo "registered search attribute $name (Keyword)"
done
