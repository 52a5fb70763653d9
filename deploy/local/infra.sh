#!/usr/bin/env bash
# Installs (when missing) and starts PostgreSQL, Redis and a single-node KRaft Kafka on loopback,
# and an S3-compatible server (gofakes3, built from the Go module proxy) for attachments,
# with all data under .local/. Idempotent: what already runs is left alone.
#   deploy/local/infra.sh start|stop|status|build-s3|start-s3
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="${QUIMBI_LOCAL_DIR:-$ROOT/.local}"
PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
S3_PORT="${S3_PORT:-9400}"
S3_BUCKET="${S3_BUCKET:-quimbi-attachments}"
GOFAKES3_VERSION=v1.2.0
GOFAKES3="$LOCAL/bin/gofakes3"
KAFKA_ADVERTISED_PORT="${KAFKA_ADVERTISED_PORT:-$KAFKA_PORT}"  # the fault tests put a proxy there
PG_USER="${PG_USER:-quimbi}"
PG_PASSWORD="${PG_PASSWORD:-quimbi}"
DATABASES="${DATABASES:-tickets agents sla scoring ai_proxy}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"

# Colours only on a terminal, never with NO_COLOR set (https://no-color.org).
if [ -t 1 ] && [ -z "${NO_COLOR+set}" ]; then BLUE=$'\033[1;34m' RED=$'\033[1;31m' RESET=$'\033[0m'
else BLUE='' RED='' RESET=''; fi
log() { printf '%s[infra]%s %s\n' "$BLUE" "$RESET" "$*"; }
die() { printf '%s[infra] error:%s %s\n' "$RED" "$RESET" "$*" >&2; exit 1; }

# Reads a tool's output: every line goes to the log file, the lines matching `pattern` (a
# package fetched or set up, a jar downloaded) are shown shortened by the sed `expression`.
progress() { # log-file pattern expression
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$1"
    if [[ $line =~ $2 ]]; then printf '    %s\n' "$(sed -E "$3" <<<"$line")"; fi
  done
}
APT_PROGRESS='^(Get:[0-9]+ |Setting up )'
APT_SHORT='s/^Get:[0-9]+ .* ([^ ]+) [^ ]+ [^ ]+ \[([^]]+)\]$/fetched \1 (\2)/; s/^Setting up ([^ ]+) .*/set up \1/'
MAVEN_PROGRESS='Downloaded from '
MAVEN_SHORT='s/.*Downloaded from [^:]+: .*\/([^/]+) \((.*)\)$/fetched \1 (\2)/'

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  die "$2 did not open port $1 within $3 s (see $LOCAL/logs/)"
}
pid_alive() { # a zombie (killed, not yet reaped) is not alive
  [ -f "$1" ] || return 1
  local state; state="$(ps -o stat= -p "$(head -n1 "$1")" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "${state:0:1}" != Z ]
}

install_packages() {
  local missing=()
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v chromium >/dev/null || missing+=(chromium)  # the e2e test that renders /docs
  command -v go >/dev/null || missing+=(golang-go)  # builds the S3 server (gofakes3)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages (full output: $LOCAL/logs/apt.log)"
  : >"$LOCAL/logs/apt.log"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } 2>&1 \
    | progress "$LOCAL/logs/apt.log" "$APT_PROGRESS" "$APT_SHORT" \
    || die "apt-get install ${missing[*]} failed (see $LOCAL/logs/apt.log)"
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
}

start_postgres() {
  local data="$LOCAL/postgres"
  if pid_alive "$data/postmaster.pid"; then log "postgres already running"; else
    port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; set PG_PORT"
    if [ ! -f "$data/PG_VERSION" ]; then
      log "initialising postgres in $data"
      mkdir -p "$data"
      chown -R postgres:postgres "$data" 2>/dev/null || true
      echo "$PG_PASSWORD" >"$LOCAL/pgpass.tmp"; chmod 644 "$LOCAL/pgpass.tmp"
      as_pg "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$LOCAL/pgpass.tmp" -A scram-sha-256 -E UTF8 >/dev/null
      rm -f "$LOCAL/pgpass.tmp"
      cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$LOCAL'
max_connections = 400
shared_buffers = 256MB
fsync = on
log_min_messages = warning
CONF
    fi
    durable_commits "$data/postgresql.conf"
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -o "-p $PG_PORT" -l "$LOCAL/logs/postgres.log" -w start >/dev/null \
      || die "postgres failed to start (see $LOCAL/logs/postgres.log)"
  fi
  local psql=(psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAq)
  if [ "$(PGPASSWORD="$PG_PASSWORD" "${psql[@]}" -c "SHOW synchronous_commit")" = off ]; then
    log "postgres acknowledged unflushed commits (synchronous_commit = off): turning that off"
    PGPASSWORD="$PG_PASSWORD" "${psql[@]}" -c "ALTER SYSTEM SET synchronous_commit = on" \
      -c "SELECT pg_reload_conf()" >/dev/null
  fi
  local db
  for db in $DATABASES; do
    if ! PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
      PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $db" >/dev/null
      log "created database $db"
    fi
  done
}

durable_commits() { # a 2xx means durable: no `synchronous_commit = off`, even in an older data dir
  sed -i -E 's/^[[:space:]]*synchronous_commit[[:space:]]*=.*$/# synchronous_commit removed: commits are flushed before they are acknowledged/' "$1"
  local auto="${1%/postgresql.conf}/postgresql.auto.conf"
  [ -f "$auto" ] && sed -i -E '/^[[:space:]]*synchronous_commit[[:space:]]*=/d' "$auto"
  return 0
}

as_pg() { # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$LOCAL/postgres" "$LOCAL/logs" 2>/dev/null || true
    chmod 777 "$LOCAL" "$LOCAL/logs"; runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() {
  if pid_alive "$LOCAL/redis.pid"; then log "redis already running"; return; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; set REDIS_PORT"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
    --pidfile "$LOCAL/redis.pid" --logfile "$LOCAL/logs/redis.log" --dir "$LOCAL" \
    || die "redis failed to start (see $LOCAL/logs/redis.log)"
  wait_port "$REDIS_PORT" redis 10
}

KAFKA_LIBS="${KAFKA_LIBS:-$LOCAL/kafka/libs}"
KAFKA_DIR="${KAFKA_DIR:-$LOCAL/kafka}"

fetch_kafka() {
  local libs="$KAFKA_LIBS"
  [ -f "$libs/.complete" ] && return 0
  log "fetching the Kafka broker from Maven Central (once; full output: $LOCAL/logs/maven.log)"
  mkdir -p "$libs"
  : >"$LOCAL/logs/maven.log"
  mvn -B -f "$ROOT/deploy/local/kafka-pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime 2>&1 \
    | progress "$LOCAL/logs/maven.log" "$MAVEN_PROGRESS" "$MAVEN_SHORT" \
    || die "fetching Kafka's jars failed (see $LOCAL/logs/maven.log)"
  touch "$libs/.complete"
}

# Every test run leaves its prefixed topics (~100 partitions each) in the development broker;
# the broker holds a file open per partition and stops ("Too many open files") when they near
# the open-files limit. Warn past half of it; past 80 % start with empty storage instead.
check_kafka_partitions() {
  local data="$1" limit count
  [ -d "$data" ] || return 0
  limit="$(ulimit -n)"; [ "$limit" = unlimited ] && return 0
  count="$(find "$data" -mindepth 1 -maxdepth 1 -type d | wc -l)"
  if [ "$count" -gt $((limit * 8 / 10)) ]; then
    log "kafka: $count partitions in $data, near the open-files limit ($limit): starting with empty storage (test topics are disposable; KAFKA_FRESH=1 does this on demand)"
    rm -rf "$data"
  elif [ "$count" -gt $((limit / 2)) ]; then
    log "kafka: $count partitions in $data (mostly old test topics); the broker stops near the open-files limit ($limit): KAFKA_FRESH=1 make infra-stop infra empties it"
  fi
}

start_kafka() {
  local dir="$KAFKA_DIR"
  mkdir -p "$dir"
  if pid_alive "$dir/kafka.pid"; then log "kafka already running"; return; fi
  [ "${KAFKA_FRESH:-0}" = 1 ] && rm -rf "$dir/data"
  check_kafka_partitions "$dir/data"
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set KAFKA_PORT"
  fetch_kafka
  cat >"$dir/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_ADVERTISED_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash the restarted broker cannot register until the controller expires the old
# registration (broker.session.timeout.ms, 9 s by default). Shorter restarts faster, but below
# ~5 s a loaded machine (2 cores under the test suite) fences the live broker.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000
auto.create.topics.enable=true
log.retention.hours=168
CONF
  cat >"$dir/log4j2.properties" <<CONF
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=$dir/kafka.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
CONF
  local cp="$KAFKA_LIBS/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "formatting kafka storage"
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    java -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$cp" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$dir/server.properties" --standalone >"$dir/format.log" 2>&1 \
      || die "formatting Kafka storage failed (see $dir/format.log)"
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$cp" kafka.Kafka "$dir/server.properties" \
    >"$dir/kafka.out" 2>&1 &
  echo $! >"$dir/kafka.pid"
  wait_port "$KAFKA_PORT" kafka 60
  # Ready means consumer groups work, not just the port (not behind the fault tests' proxy,
  # which is not listening yet).
  if [ -x "$ROOT/.venv/bin/python" ] && [ "$KAFKA_ADVERTISED_PORT" = "$KAFKA_PORT" ]; then
    "$ROOT/.venv/bin/python" "$ROOT/deploy/local/kafka_warmup.py" "127.0.0.1:$KAFKA_PORT" \
      >"$dir/warmup.log" 2>&1 || die "kafka does not coordinate groups (see $dir/warmup.log)"
  fi
}

# The S3-compatible server for attachments' S3 store (tests, `ATTACHMENTS_STORAGE=s3`):
# gofakes3 (MIT) built once with `go install` (~16 s with downloads, 12 MB), files under
# .local/s3. Local runs store attachments in a directory; this is the S3 path's real peer.
build_s3() {
  [ -x "$GOFAKES3" ] && return 0
  command -v go >/dev/null || install_packages
  log "building gofakes3 $GOFAKES3_VERSION (once; log: $LOCAL/logs/gofakes3-build.log)"
  mkdir -p "$LOCAL/bin"
  GOBIN="$LOCAL/bin" GOFLAGS=-mod=mod go install "github.com/johannesboyne/gofakes3/cmd/gofakes3@$GOFAKES3_VERSION" \
    >"$LOCAL/logs/gofakes3-build.log" 2>&1 || die "building gofakes3 failed (see $LOCAL/logs/gofakes3-build.log)"
}

start_s3() { # optional for the suite (attachments default to a directory): never fatal when taken
  [ "${INFRA_S3:-1}" = 0 ] && return 0
  if pid_alive "$LOCAL/s3.pid"; then log "s3 (gofakes3) already running"; return; fi
  if port_open "$S3_PORT"; then log "port $S3_PORT is taken by another process: s3 not started (set S3_PORT)"; return; fi
  build_s3
  mkdir -p "$LOCAL/s3"
  log "starting s3 (gofakes3) on 127.0.0.1:$S3_PORT, bucket $S3_BUCKET"
  nohup "$GOFAKES3" -backend fs -fs.path "$LOCAL/s3" -fs.create -host "127.0.0.1:$S3_PORT" \
    -initialbucket "$S3_BUCKET" >"$LOCAL/logs/s3.log" 2>&1 &
  echo $! >"$LOCAL/s3.pid"
  wait_port "$S3_PORT" s3 20
}

stop_all() {
  if pid_alive "$LOCAL/s3.pid"; then log "stopping s3"; kill "$(cat "$LOCAL/s3.pid")"; fi
  if [ -f "$KAFKA_DIR/kafka.pid" ]; then
    local pid; pid="$(cat "$KAFKA_DIR/kafka.pid")"
    if kill "$pid" 2>/dev/null; then
      log "stopping kafka"; for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_DIR/kafka.pid"
  fi
  if pid_alive "$LOCAL/redis.pid"; then log "stopping redis"; kill "$(cat "$LOCAL/redis.pid")"; fi
  if pid_alive "$LOCAL/postgres/postmaster.pid"; then
    log "stopping postgres"; as_pg "$PG_BIN/pg_ctl" -D "$LOCAL/postgres" -m fast -w stop >/dev/null
  fi
}

status() {
  local name port
  for name in postgres:$PG_PORT redis:$REDIS_PORT kafka:$KAFKA_PORT s3:$S3_PORT; do
    port="${name#*:}"; if port_open "$port"; then echo "${name%%:*}: up ($port)"; else echo "${name%%:*}: down"; fi
  done
}

mkdir -p "$LOCAL/logs" "$LOCAL/kafka"
case "${1:-start}" in
  start)
    install_packages
    start_postgres
    start_redis
    start_kafka
    start_s3
    log "ready: postgres :$PG_PORT, redis :$REDIS_PORT, kafka :$KAFKA_PORT, s3 :$S3_PORT"
    ;;
  build-s3) build_s3 ;;
  start-s3) start_s3 ;;
  stop) stop_all ;;
  stop-kafka) # used by tests that prove nothing is lost while the broker is down
    pid="$(cat "$KAFKA_DIR/kafka.pid" 2>/dev/null || true)"; [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -f "$KAFKA_DIR/kafka.pid" ;;
  start-kafka) start_kafka ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
