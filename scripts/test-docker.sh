#!/usr/bin/env bash
# test-docker: run dbkit/dbtest's Testcontainers path for real, on a machine
# with no registry (only Debian's mirror and the Go module proxy reachable).
#
#   1. installs docker.io and mmdebstrap if missing (apt-get, as root);
#   2. starts dockerd inside a network namespace of its own with only loopback
#      up, so its bridge, NAT rules and ip_forward never touch the host;
#   3. builds a PostgreSQL 15 image from Debian packages (mmdebstrap
#      --variant=extract, docker import, a two-line legacy build for
#      STOPSIGNAL), kept in a Docker data-root under $DBKIT_DOCKER_CACHE;
#   4. runs the dbtest tests matching $DBKIT_DOCKER_TEST_RUN inside the
#      namespace on that image, Ryuk off, and fails if TestTestcontainersServer
#      did not pass (a skip is a failure here);
#   5. on any exit removes the containers, stops dockerd, deletes the namespace
#      and the temporary directory. The cache (the data-root with the image) stays.
#
# Environment:
#   DBKIT_DOCKER_CACHE     where dockerd keeps its images between runs (default
#                          .cache/docker-test in the repository; delete it to rebuild)
#   DBKIT_DOCKER_TEST_RUN  go test -run pattern (default: TestTestcontainersServer and
#                          TestContainerReapedWhenProcessEnds, both required to pass)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

cache=${DBKIT_DOCKER_CACHE:-$repo/.cache/docker-test}
run_pattern=${DBKIT_DOCKER_TEST_RUN:-'^(TestTestcontainersServer|TestContainerReapedWhenProcessEnds)$'}
pg_major=15
packages="base-files,dash,coreutils,mawk,grep,sed,util-linux,libc-bin,tzdata,postgresql-$pg_major"

log() { printf 'test-docker: [%3ds] %s\n' "$SECONDS" "$*"; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, dockerd)"

# --- 1. packages -------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "installed"
fi
# The Debian client matches the daemon; a newer one elsewhere on PATH also works.
docker_bin=$(command -v /usr/bin/docker docker | head -n 1)

# --- 2. dockerd in a loopback-only network namespace --------------------------
tmp=$(mktemp -d /tmp/dbkit-docker.XXXXXX) # short: containerd's socket paths have a length limit
ns="dbkit-docker-$$"
sock="$tmp/docker.sock"
pidfile="$tmp/dockerd.pid"
data_root="$cache/data-root"
ns_created=""

in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
docker() { DOCKER_HOST="unix://$sock" "$docker_bin" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "${test_pid:-}" ] && kill -0 "$test_pid" 2>/dev/null; then
    log "stopping the tests (pid $test_pid)"
    kill -TERM "$test_pid"
    wait "$test_pid" 2>/dev/null
  fi
  if [ -S "$sock" ]; then
    local ids
    ids=$(docker ps -aq 2>/dev/null)
    if [ -n "$ids" ]; then
      log "removing containers left behind: $(echo "$ids" | tr '\n' ' ')"
      # shellcheck disable=SC2086 # one id a word
      docker rm -f -v $ids >/dev/null
    fi
  fi
  if [ -s "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping dockerd (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then
        log "dockerd still running after 30s: killing it"
        kill -KILL "$pid"
      fi
    fi
  fi
  [ -n "${dockerd_nsenter:-}" ] && wait "$dockerd_nsenter" 2>/dev/null
  # Mounts dockerd may have left behind if it was killed.
  grep -F -e " $tmp" -e " $data_root/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
    umount -l "$m"
  done
  [ -n "$ns_created" ] && ip netns delete "$ns"
  rm -rf "$tmp"
  log "cleaned up (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns"
ns_created=1
in_ns ip link set lo up
mkdir -p "$data_root" "$tmp/exec"
log "starting dockerd in network namespace $ns"
in_ns dockerd \
  --data-root "$data_root" --exec-root "$tmp/exec" --pidfile "$pidfile" \
  --host "unix://$sock" --storage-driver overlay2 \
  >"$tmp/dockerd.log" 2>&1 &
dockerd_nsenter=$!
for _ in $(seq 150); do
  docker version >/dev/null 2>&1 && break
  kill -0 "$dockerd_nsenter" 2>/dev/null || { cat "$tmp/dockerd.log"; die "dockerd exited"; }
  sleep 0.2
done
docker version >/dev/null 2>&1 || { tail -n 30 "$tmp/dockerd.log"; die "dockerd did not answer in 30s"; }
log "dockerd is up"

# --- 3. the PostgreSQL image ---------------------------------------------------
# The entrypoint does what the official image's does, as far as Testcontainers'
# postgres module looks: init, a temporary server (first "ready to accept
# connections"), create POSTGRES_DB, stop, exec the real server (the second).
entrypoint=$(cat <<'SH'
#!/bin/sh
set -eu
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --clear-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -q -c "CREATE DATABASE \"$db\""
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec "$@"
SH
)
dockerfile=$(cat <<EOF2
FROM dbkit-test/postgres-rootfs:$pg_major
STOPSIGNAL SIGINT
EOF2
)
# The recipe is this script: any change to it builds a new image.
key=$(sha256sum "$repo/scripts/test-docker.sh" | cut -c1-12)
image="dbkit-test/postgres:$pg_major-$key"
rootfs="$tmp/rootfs.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
  log "image $image is cached"
else
  log "building the root filesystem with mmdebstrap (--variant=extract)"
  printf '%s\n' "$entrypoint" >"$tmp/docker-entrypoint.sh"
  # extract runs no maintainer scripts: users, links, directories and the
  # linker cache are made here. The hooks' "$1" is the root filesystem.
  # shellcheck disable=SC2016
  mmdebstrap --quiet --variant=extract --include="$packages" \
    --extract-hook='set -e
      printf "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n" >"$1/etc/passwd"
      printf "root:x:0:\npostgres:x:999:\n" >"$1/etc/group"
      printf "root:*:1::::::\npostgres:*:1::::::\n" >"$1/etc/shadow"
      [ -e "$1/bin/sh" ] || ln -s dash "$1/bin/sh"
      [ -e "$1/usr/bin/awk" ] || ln -s mawk "$1/usr/bin/awk"
      mkdir -p "$1/tmp" "$1/root" "$1/usr/local/bin" "$1/var/run/postgresql" "$1/var/lib/postgresql/data"
      chmod 1777 "$1/tmp"
      chroot "$1" /sbin/ldconfig
      chroot "$1" /bin/sh -c "chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql"' \
    --extract-hook="copy-in $tmp/docker-entrypoint.sh /usr/local/bin" \
    --extract-hook='chmod 755 "$1/usr/local/bin/docker-entrypoint.sh"' \
    bookworm "$rootfs"
  log "root filesystem built: $(du -h "$rootfs" | cut -f1)"
  log "importing $rootfs"
  docker import \
    --change "ENV PATH=/usr/lib/postgresql/$pg_major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV PGDATA=/var/lib/postgresql/data" \
    --change "ENV LANG=C.UTF-8" \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change 'EXPOSE 5432' \
    "$rootfs" "dbkit-test/postgres-rootfs:$pg_major" >/dev/null
  # docker import refuses STOPSIGNAL; the legacy builder adds it.
  printf '%s\n' "$dockerfile" | DOCKER_BUILDKIT=0 docker build -q -t "$image" - >/dev/null
  docker rmi "dbkit-test/postgres-rootfs:$pg_major" >/dev/null
  # Images of older recipes.
  for old in $(docker images --format '{{.Repository}}:{{.Tag}}' dbkit-test/postgres); do
    [ "$old" = "$image" ] || docker rmi "$old" >/dev/null || true
  done
  log "image $image built"
fi

# --- 4. the tests, inside the namespace -----------------------------------------
# Compiled outside: the namespace has no route to the Go module proxy.
log "compiling dbkit/dbtest's tests"
go test -c -o "$tmp/dbtest.test" ./dbkit/dbtest/
log "running -run '$run_pattern' on $image"
# In the background, so that a signal to this script ends it (and the trap
# stops the tests) at once rather than when the tests end.
(
  cd dbkit/dbtest
  exec nsenter --net="/run/netns/$ns" env DOCKER_HOST="unix://$sock" DBKIT_TEST_SERVER=docker \
    DBKIT_TEST_POSTGRES_IMAGE="$image" TESTCONTAINERS_RYUK_DISABLED=true \
    "$tmp/dbtest.test" -test.count=1 -test.v -test.timeout=10m -test.run "$run_pattern"
) >"$tmp/test.log" 2>&1 &
test_pid=$!
tail -n +1 -f --pid="$test_pid" "$tmp/test.log" &
tail_pid=$!
test_rc=0
wait "$test_pid" || test_rc=$?
test_pid=""
wait "$tail_pid" # tail ends once it has shown the last of the log
log "tests finished (exit $test_rc)"
left=$(docker ps -aq | wc -l)
[ "$left" -eq 0 ] || log "note: the tests left $left container(s) running (removed below)"
[ "$test_rc" -eq 0 ] || die "go test failed"
grep -q -- '--- PASS: TestTestcontainersServer ' "$tmp/test.log" ||
  die "TestTestcontainersServer did not pass (skipped or not run)"
log "PASS: TestTestcontainersServer ran on Docker"
if [ -z "${DBKIT_DOCKER_TEST_RUN:-}" ]; then
  grep -q -- '--- PASS: TestContainerReapedWhenProcessEnds ' "$tmp/test.log" ||
    die "TestContainerReapedWhenProcessEnds did not pass (skipped or not run)"
  log "PASS: a killed test process's container was removed without Ryuk"
fi
