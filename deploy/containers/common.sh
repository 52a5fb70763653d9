# Shared by the scripts in deploy/containers: paths, pinned versions, logging.
# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${QUIMBI_CONTAINERS_DIR:-$ROOT/.local/containers}"
LOGS="$STATE/logs"
TOOLS="$STATE/tools"
SOCKET="${PODMAN_SOCKET:-/run/podman/podman.sock}"
PODMAN_COMPOSE_VERSION=1.6.0
DEBIAN_SUITE=bookworm
# The image names the compose file, the Dockerfiles and the tests use; here they are built locally.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka-pom.xml")"
SERVICES=(standin tickets agents sla scoring ai-proxy gateway)

export DOCKER_HOST="unix://$SOCKET"
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_CONNECTION_MODE=docker_host
mkdir -p "$LOGS"

log() { printf '\033[1;36m[containers]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[containers] error:\033[0m %s\n' "$*" >&2; exit 1; }
docker_api_up() { [ -S "$SOCKET" ] && curl -sf --max-time 2 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
