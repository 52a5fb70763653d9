#!/usr/bin/env bash
# kafka-run-class.sh CLASS [args]: Java with Kafka's class path and the KAFKA_* JVM options,
# as the distribution's script does.
base="$(cd "$(dirname "$0")/.." && pwd)"
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$base/config/tools-log4j2.properties}"
case "$1" in # the class-data sharing archives recorded at build time, when present
  kafka.Kafka) archive="$base/kafka.jsa" ;;
  kafka.tools.StorageTool) archive="$base/storage.jsa" ;;
  *) archive= ;;
esac
share=
if [ -n "$archive" ] && [ -f "$archive" ]; then share="-XX:SharedArchiveFile=$archive"; fi
# shellcheck disable=SC2086 # the *_OPTS variables are lists of JVM options
exec java $share $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_JMX_OPTS:-} $KAFKA_LOG4J_OPTS ${KAFKA_OPTS:-} \
  -cp "$base/libs/*" "$@"
