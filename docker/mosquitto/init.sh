#!/bin/sh
# One-shot set-up of the compose broker's dynamic security, run by the
# `broker-init` (before Mosquitto starts) and `broker-accounts` (once it
# answers) services of docker-compose.yml. Safe to run again: existing files
# and accounts are kept.
set -eu

SECURITY_FILE=/mosquitto/data/dynamic-security.json
: "${DYNSEC_ADMIN_PASSWORD:?set DYNSEC_ADMIN_PASSWORD in .env}"

case "${1:-}" in
file)
    if [ ! -f "$SECURITY_FILE" ]; then
        mosquitto_ctrl dynsec init "$SECURITY_FILE" admin "$DYNSEC_ADMIN_PASSWORD"
        chown mosquitto:mosquitto "$SECURITY_FILE"
        echo "Created $SECURITY_FILE with the admin account"
    fi
    ;;
accounts)
    : "${GATEWAY_MQTT_PASSWORD:?set GATEWAY_MQTT_PASSWORD in .env}"
    : "${SIMULATOR_MQTT_PASSWORD:?set SIMULATOR_MQTT_PASSWORD in .env}"
    ctrl() {
        mosquitto_ctrl -h mosquitto -p 1883 -u admin -P "$DYNSEC_ADMIN_PASSWORD" \
            dynsec "$@"
    }
    # Mosquitto may still be starting: try for a minute.
    tries=0
    until ctrl getDefaultACLAccess >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "Mosquitto at mosquitto:1883 did not answer the admin account" >&2
            exit 1
        fi
        sleep 1
    done
    # Each command fails harmlessly when the account or role exists already.
    ctrl createRole decor-gateway 2>/dev/null || true
    ctrl addRoleACL decor-gateway subscribePattern 'city/#' allow 2>/dev/null || true
    ctrl addRoleACL decor-gateway publishClientReceive 'city/#' allow 2>/dev/null || true
    ctrl addRoleACL decor-gateway publishClientSend 'decor/deadletter/#' allow 2>/dev/null || true
    ctrl createClient decor-gateway -p "$GATEWAY_MQTT_PASSWORD" 2>/dev/null || true
    ctrl addClientRole decor-gateway decor-gateway 2>/dev/null || true
    ctrl createRole decor-simulator 2>/dev/null || true
    ctrl addRoleACL decor-simulator publishClientSend 'city/#' allow 2>/dev/null || true
    ctrl createClient decor-simulator -p "$SIMULATOR_MQTT_PASSWORD" 2>/dev/null || true
    ctrl addClientRole decor-simulator decor-simulator 2>/dev/null || true
    echo "Broker accounts decor-gateway and decor-simulator are in place"
    ;;
*)
    echo "usage: init.sh file|accounts" >&2
    exit 2
    ;;
esac
