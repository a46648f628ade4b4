#!/usr/bin/env bash
# Make sure the services the test suite needs answer on loopback:
#   RabbitMQ   127.0.0.1:5672  (quorum and stream queues: built into 3.10+, no plugin needed)
#   PostgreSQL 127.0.0.1:5432  with a database "test" that user postgres can reach
# and the programs it drives are installed:
#   Chromium   /usr/bin/chromium (Debian's package), driven by Playwright in the dashboard
#              tests (tests/e2e/test_dashboard.py); never a browser Playwright downloads
#   HAProxy    routes by govbus's DNS in tests/e2e/test_dns_haproxy.py (started by the test on
#              its own ports, stopped by PID)
#   dig        (dnsutils) asks govbus's DNS interface, as a user would
#   wrk        the HTTP load generator of the edge benchmark (python -m benchmarks)
#   dnsperf    the DNS load generator of the dns benchmark (no test needs it)
# For each: answering -> nothing to do; installed -> start it; absent and root -> apt-get install
# it and start it; otherwise fail with one line saying how to get it (Docker compose).
# Idempotent; well under a second when everything is already up.
set -euo pipefail

AMQP_PORT=5672
PG_PORT=5432
WAIT_S=60
COMPOSE_HINT="GOVBUS_AUTH_SECRET=unused docker compose -f compose/docker-compose.yml up -d rabbitmq postgres"

log() { printf 'ensure-services: %s\n' "$*" >&2; }
die() {
    printf 'ensure-services: %s; start it yourself, e.g. `%s`\n' "$*" "$COMPOSE_HINT" >&2
    exit 1
}
is_root() { [ "$(id -u)" = 0 ]; }

# RabbitMQ answers when it sends connection.start (a method frame: first byte 1) in reply to
# the AMQP 0-9-1 protocol header. A port that merely accepts is not enough.
amqp_answers() {
    timeout 3 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/'"$AMQP_PORT"' || exit 1
        printf "AMQP\0\0\x09\x01" >&3
        IFS= read -r -d "" -n 1 frame_type <&3 || true
        [ "$frame_type" = $'"'"'\x01'"'"' ]
    ' 2>/dev/null
}

pg_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2
    else
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PG_PORT" 2>/dev/null
    fi
}

wait_for() { # name check-function
    local name=$1 check=$2 i
    for ((i = 0; i < WAIT_S * 4; i++)); do
        if "$check"; then
            log "$name is up"
            return 0
        fi
        sleep 0.25
    done
    die "$name did not answer within ${WAIT_S}s"
}

apt_install() { # package
    log "installing $1 (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${_APT_UPDATED:-}" ]; then
        apt-get update -qq
        _APT_UPDATED=1
    fi
    apt-get install -y -qq "$1" >/dev/null
}

# --- RabbitMQ ---------------------------------------------------------------------------------

ensure_rabbitmq() {
    amqp_answers && return 0
    if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
        is_root || die "RabbitMQ is not installed and not answering on 127.0.0.1:$AMQP_PORT"
        apt_install rabbitmq-server
    fi
    PATH="$PATH:/usr/sbin"
    # The package may have started it already (postinst) or it may be booting.
    if ! amqp_answers; then
        log "starting RabbitMQ"
        rabbitmq-server -detached >/dev/null 2>&1 ||
            die "could not start RabbitMQ (rabbitmq-server -detached)"
    fi
    wait_for RabbitMQ amqp_answers
    # A node upgraded from an older version may have feature flags off (quorum queues and
    # streams need theirs); a fresh node has them all on. Cheap only when we just started it.
    rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1 || true
}

# --- PostgreSQL -------------------------------------------------------------------------------

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

pg_trust_loopback() { # for a cluster this script installed: password-less local test access
    local hba
    hba="/etc/postgresql/$(pg_version)/main/pg_hba.conf"
    [ -f "$hba" ] || return 0
    grep -q 'govbus-test' "$hba" && return 0
    log "allowing password-less (trust) loopback connections in $hba (test machine)"
    {
        printf '# govbus-test: loopback trust for the test suite (added by ensure-services.sh)\n'
        printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
        cat "$hba"
    } >"$hba.new"
    chown --reference="$hba" "$hba.new"
    chmod --reference="$hba" "$hba.new"
    mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main reload
}

ensure_postgres() {
    local installed_now=""
    if ! pg_answers; then
        if [ -z "$(pg_version)" ]; then
            is_root || die "PostgreSQL is not installed and not answering on 127.0.0.1:$PG_PORT"
            apt_install postgresql
            installed_now=1
        fi
        pg_answers || {
            log "starting PostgreSQL $(pg_version)"
            pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start ||
                die "could not start PostgreSQL (pg_ctlcluster $(pg_version) main start)"
        }
        wait_for PostgreSQL pg_answers
        if [ -n "$installed_now" ]; then pg_trust_loopback; fi
    fi
    command -v psql >/dev/null 2>&1 || {
        is_root || die "psql (postgresql-client) is missing"
        apt_install postgresql-client
    }
    local have
    if ! have=$(PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -XtAc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>&1); then
        die "PostgreSQL answers but user postgres cannot connect over 127.0.0.1 without a password (the tests need trust auth for loopback): $(head -n 1 <<<"$have")"
    fi
    if [ "$have" != 1 ]; then
        log "creating database test (as user postgres)"
        createdb -h 127.0.0.1 -p "$PG_PORT" -U postgres test
    fi
}

# --- Chromium -----------------------------------------------------------------------------------

CHROMIUM=/usr/bin/chromium

ensure_chromium() {
    [ -x "$CHROMIUM" ] && return 0
    if ! is_root; then
        printf 'ensure-services: %s is missing (the dashboard tests drive it); install it with `sudo apt-get install chromium`\n' "$CHROMIUM" >&2
        exit 1
    fi
    apt_install chromium
    [ -x "$CHROMIUM" ] || { printf 'ensure-services: apt-get installed chromium but %s is missing\n' "$CHROMIUM" >&2; exit 1; }
    log "Chromium is installed ($CHROMIUM)"
}

# --- programs the tests and benchmarks drive ------------------------------------------------------

ensure_program() { # binary package
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    if ! is_root; then
        printf 'ensure-services: %s is missing; install it with `sudo apt-get install %s`\n' "$1" "$2" >&2
        exit 1
    fi
    apt_install "$2"
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ||
        { printf 'ensure-services: apt-get installed %s but %s is missing\n' "$2" "$1" >&2; exit 1; }
    log "$1 is installed ($2)"
}

ensure_rabbitmq
ensure_postgres
ensure_chromium
ensure_program haproxy haproxy
ensure_program dig dnsutils
ensure_program wrk wrk
# only the dns benchmark needs dnsperf: without root to install it, say so and go on
if is_root || command -v dnsperf >/dev/null 2>&1; then
    ensure_program dnsperf dnsperf
else
    printf 'ensure-services: dnsperf is missing (the dns benchmark needs it): sudo apt-get install dnsperf\n' >&2
fi
