# Shell helpers of the setup scripts (sourced, not run): progress lines,
# Debian packages, and a cmake build watched until it ends. The sourcing
# script sets SETUP_TAG (the prefix of its lines) first.

log() { printf '[%s] %s\n' "$SETUP_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$SETUP_TAG" "$*" >&2; exit 1; }
mmss() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# watch_build PID LOG LABEL : while PID runs, say every 30 s how far the
# build in LOG is (cmake's "[ NN%]" lines) and about how long is left.
watch_build() {
    local pid="$1" build_log="$2" label="$3" t0=$SECONDS pct elapsed
    while kill -0 "$pid" 2>/dev/null; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
        elapsed=$((SECONDS - t0))
        pct="$(grep -o '^\[ *[0-9]*%\]' "$build_log" 2>/dev/null | tail -1 | tr -dc '0-9')"
        if [ -n "$pct" ] && [ "$pct" -gt 2 ]; then
            log "$label: ${pct}% after $(mmss "$elapsed"), about $(mmss $((elapsed * (100 - pct) / pct))) left"
        else
            log "$label: $(mmss "$elapsed") so far"
        fi
    done
}

apt_updated=0
ensure_apt() {  # ensure_apt PKG... : install the Debian packages not yet installed
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ $apt_updated -eq 0 ]; then
        log "apt-get update"
        $sudo apt-get update -qq >&2
        apt_updated=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
