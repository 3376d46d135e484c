#!/bin/sh
# Corral agent installer, served by the broker at GET /agent/install.sh.
#
#   curl -fsSL https://broker.example/agent/install.sh | sudo sh -s -- --token TOKEN
#
# Options:
#   --token TOKEN     one-time registration token from the broker (required unless
#                     --no-register)
#   --name NAME       host name shown in Corral (default: the agent uses the hostname)
#   --tag KEY=VALUE   a tag for policy (repeatable)
#   --ca-file FILE    CA bundle to trust for the broker (private PKI)
#   --root DIR        install into DIR instead of / (image building, tests): every path
#                     is prefixed with DIR and systemctl is not run
#   --no-register     install files only; register later (golden images) with the
#                     command this script prints
#
# Never edit the broker URL below by hand: the broker substitutes it when serving this.
set -eu

BROKER_URL='@@BROKER_URL@@'
ROOT=''
TOKEN=''
NAME=''
CA_FILE=''
TAGS=''
REGISTER=1

PYZ=/usr/local/lib/corral/corral-agent.pyz
WRAPPER=/usr/local/bin/corral-agent
CONFIG=/etc/corral/agent.toml
UNIT=/etc/systemd/system/corral-agent.service

die() {
    echo "corral-agent install: error: $*" >&2
    exit 1
}

need_value() {
    [ "$#" -ge 2 ] || die "option $1 needs a value"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --token) need_value "$@"; TOKEN=$2; shift 2 ;;
        --name) need_value "$@"; NAME=$2; shift 2 ;;
        --tag)
            need_value "$@"
            case "$2" in
                ?*=*) ;;
                *) die "--tag needs KEY=VALUE, got '$2'" ;;
            esac
            TAGS="$TAGS
$2"
            shift 2
            ;;
        --ca-file) need_value "$@"; CA_FILE=$2; shift 2 ;;
        --root) need_value "$@"; ROOT=${2%/}; shift 2 ;;
        --no-register) REGISTER=0; shift ;;
        -h|--help) sed -n '2,20p' "$0" 2>/dev/null || true; exit 0 ;;
        *) die "unknown option '$1'" ;;
    esac
done

case "$BROKER_URL" in
    http://*|https://*) ;;
    *) die "this script was not served by a broker (no broker URL substituted)" ;;
esac
if [ "$REGISTER" = 1 ] && [ -z "$TOKEN" ]; then
    die "--token is required (or pass --no-register)"
fi
if [ -n "$CA_FILE" ] && [ ! -r "$CA_FILE" ]; then
    die "CA file '$CA_FILE' is not readable"
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "must run as root (try: sudo sh)"
fi

PYTHON=$(command -v python3 2>/dev/null) || die "python3 not found; install Python 3.9 or newer"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "$PYTHON is older than Python 3.9"

mkdir -p "$ROOT/usr/local/lib/corral" "$ROOT/usr/local/bin" || die "cannot create directories under '$ROOT/usr/local'"
TMP="$ROOT$PYZ.download.$$"
trap 'rm -f "$TMP"' EXIT
if command -v curl >/dev/null 2>&1; then
    set -- curl -fsSL --retry 3 -o "$TMP"
    [ -n "$CA_FILE" ] && set -- "$@" --cacert "$CA_FILE"
elif command -v wget >/dev/null 2>&1; then
    set -- wget -q -O "$TMP"
    [ -n "$CA_FILE" ] && set -- "$@" "--ca-certificate=$CA_FILE"
else
    die "neither curl nor wget is installed"
fi
"$@" "$BROKER_URL/agent/corral-agent.pyz" || die "download of $BROKER_URL/agent/corral-agent.pyz failed"
[ -s "$TMP" ] || die "downloaded agent is empty"
# Bytecode for this python3 inside the archive: without it every start compiles the agent
# from source, which leaves about 1 MiB more in the running agent. Optional: on failure
# the archive runs from source.
"$PYTHON" -I -S -c 'import sys; sys.path.insert(0, sys.argv[1]); from agent.build import add_bytecode; add_bytecode(sys.argv[1], runtime_path=sys.argv[2])' "$TMP" "$PYZ" 2>/dev/null \
    || echo "corral-agent install: warning: could not precompile $PYZ; it will run from source" >&2
chmod 0755 "$TMP" && mv -f "$TMP" "$ROOT$PYZ" || die "cannot install $ROOT$PYZ"

# -I -S: no site module, no site-packages, no PYTHON* variables; the archive holds
# everything the agent imports, and skipping site saves the agent about 0.6 MiB.
cat > "$ROOT$WRAPPER" <<EOF || die "cannot write $ROOT$WRAPPER"
#!/bin/sh
exec '$PYTHON' -I -S '$PYZ' "\$@"
EOF
chmod 0755 "$ROOT$WRAPPER" || die "cannot chmod $ROOT$WRAPPER"

mkdir -p "$ROOT/etc/systemd/system" || die "cannot create $ROOT/etc/systemd/system"
# KillMode=process: restarting the agent must not kill the commands it started.
cat > "$ROOT$UNIT" <<EOF || die "cannot write $ROOT$UNIT"
[Unit]
Description=Corral agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$PYTHON -I -S $PYZ run --config $CONFIG
Restart=on-failure
RestartSec=5
KillMode=process

[Install]
WantedBy=multi-user.target
EOF

if [ "$REGISTER" = 1 ]; then
    set -- "$PYTHON" -I -S "$ROOT$PYZ" register --url "$BROKER_URL" --token "$TOKEN" --config "$ROOT$CONFIG"
    [ -n "$NAME" ] && set -- "$@" --name "$NAME"
    [ -n "$CA_FILE" ] && set -- "$@" --ca-file "$CA_FILE"
    OLDIFS=$IFS
    IFS='
'
    set -f
    for tag in $TAGS; do
        set -- "$@" --tag "$tag"
    done
    set +f
    IFS=$OLDIFS
    "$@" || die "registration with $BROKER_URL failed (see the message above)"
else
    echo "corral-agent install: files installed; register with:"
    echo "  $WRAPPER register --url $BROKER_URL --token TOKEN --config $CONFIG"
fi

if [ -z "$ROOT" ]; then
    if [ "$REGISTER" = 1 ]; then
        systemctl daemon-reload || die "systemctl daemon-reload failed"
        systemctl enable --now corral-agent.service || die "systemctl enable --now corral-agent failed"
    else
        systemctl daemon-reload || die "systemctl daemon-reload failed"
        systemctl enable corral-agent.service || die "systemctl enable corral-agent failed"
    fi
else
    echo "corral-agent install: --root given, systemctl skipped"
fi
echo "corral-agent install: done"
