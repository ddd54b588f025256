#!/usr/bin/env bash
# The web site under load: gunicorn with the production settings on loopback, wrk (Debian package) against
# /healthz, the subscribe page, ticker search and a valid subscribe POST, DURATION seconds each; prints req/s and
# p50/p99 per endpoint and the subscribe page's throughput as a share of /healthz's in the same run.
#
#   bench/web.sh                      the shipped gunicorn settings (walter_site/gunicorn_conf.py)
#   bench/web.sh --compare            the old settings (GUNICORN_MAX_REQUESTS=2000, no preload), then the shipped ones
#   bench/web.sh --against REV        the code of git revision REV, then this checkout's, ROUNDS times in turn (the
#                                     machine's load changes from minute to minute; taking turns shares it out), and
#                                     the median of each endpoint's figures over the rounds
#
# Environment: DURATION (20), CONNECTIONS (16), WRK_THREADS (2), ROUNDS (3, with --against), DATABASE_URL (default:
# SQLite in a temporary folder). Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-16}"
WRK_THREADS="${WRK_THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

WORK="$(mktemp -d)"
GUNICORN_PID=""
cleanup() {
  if [ -n "$GUNICORN_PID" ]; then kill "$GUNICORN_PID" 2>/dev/null || true; wait "$GUNICORN_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export WALTER_ENV=production SECRET_KEY=bench-only-not-a-secret ALLOWED_HOSTS=127.0.0.1
export DATABASE_URL="${DATABASE_URL:-sqlite:///$WORK/web.sqlite3}"
export WALTER_VAR_DIR="$WORK/var" STATIC_ROOT="$WORK/static" LOG_LEVEL=WARNING
# Plain HTTP on loopback: no TLS redirect, cookies over HTTP; the limits are lifted so the figures measure pages.
export SECURE_SSL_REDIRECT=false BEHIND_PROXY=false SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false
export SUBSCRIBE_LIMIT_PER_IP=1000000000 SUBSCRIBE_LIMIT_PER_EMAIL=1000000000 TICKER_SEARCH_LIMIT_PER_MINUTE=1000000000
export EMAIL_BACKEND=django.core.mail.backends.dummy.EmailBackend
export GUNICORN_BIND="127.0.0.1:$PORT"
BASE="http://127.0.0.1:$PORT"

"$PY" manage.py migrate --verbosity 0
"$PY" manage.py collectstatic --noinput --verbosity 0
"$PY" manage.py seed_demo --quiet

# The code gunicorn serves: this checkout, or the revision given with --against (exported to a folder of its own).
CODE="$ROOT"
start_gunicorn() {
  (cd "$CODE" && exec "$ROOT/.venv/bin/gunicorn" --config python:walter_site.gunicorn_conf walter_site.wsgi \
    >"$WORK/gunicorn.log" 2>&1) &
  GUNICORN_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "gunicorn did not start:" >&2; tail -20 "$WORK/gunicorn.log" >&2; exit 1
}

stop_gunicorn() {
  kill "$GUNICORN_PID"; wait "$GUNICORN_PID" 2>/dev/null || true; GUNICORN_PID=""
}

# A valid subscribe POST: the form's CSRF token and cookie, a new address each time (so each is a real sign-up).
post_script() {
  curl -fsS -c "$WORK/cookies" "$BASE/" -o "$WORK/page.html"
  local cookie token
  cookie="$(awk '$6 == "csrftoken" {print $7}' "$WORK/cookies")"
  token="$(sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' "$WORK/page.html" | head -1)"
  cat >"$WORK/post.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = "csrfmiddlewaretoken=$token&email=reader" .. math.random(1, 1000000000) .. "-" .. counter ..
    "%40example.com&tickers=AAPL%2C+MSFT&website="
  return wrk.format("POST", "/", {["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = "csrftoken=$cookie"}, body)
end
LUA
}

# One endpoint: "name req/s p50 p99", from wrk's --latency report (converted to milliseconds).
measure() {
  local name="$1" url="$2"; shift 2
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" >"$WORK/wrk.out"
  cat "$WORK/wrk.out" >>"$WORK/wrk.log"
  "$PY" - "$name" "$WORK/wrk.out" "$VARIANT" "$WORK/results.tsv" <<'PYEOF'
import re, sys
out = open(sys.argv[2]).read()
def ms(label):
    number, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
line = f"{sys.argv[1]:<22} {rps:>9.0f} req/s   p50 {ms(50):>7.1f} ms   p99 {ms(99):>7.1f} ms"
print(line + (f"   NON-2xx/3xx: {errors.group(1)}" if errors else ""))
with open(sys.argv[4], "a") as results:
    results.write(f"{sys.argv[3]}\t{sys.argv[1]}\t{rps}\t{ms(50)}\t{ms(99)}\n")
PYEOF
}

run_all() {
  local label="$1"
  start_gunicorn
  post_script
  echo "== $label (GUNICORN_MAX_REQUESTS=${GUNICORN_MAX_REQUESTS:-shipped}, GUNICORN_PRELOAD=${GUNICORN_PRELOAD:-shipped}; ${DURATION}s each, $CONNECTIONS connections; load average $(cut -d' ' -f1-3 /proc/loadavg))"
  local health subscribe
  health="$(measure "/healthz" "$BASE/healthz")"; echo "$health"
  subscribe="$(measure "subscribe page" "$BASE/")"; echo "$subscribe"
  measure "ticker search" "$BASE/api/tickers/search?q=app"
  measure "subscribe POST" "$BASE/" -s "$WORK/post.lua"
  echo "$health" "$subscribe" | awk '{printf "subscribe page / healthz throughput: %.2f\n", $12 / $2}'
  echo "worker restarts during the run: $(grep -c "Autorestarting worker" "$WORK/gunicorn.log" || true)"
  stop_gunicorn
}

# The median of each variant's figures per endpoint over the rounds, and the subscribe page's share of /healthz.
summary() {
  "$PY" - "$WORK/results.tsv" <<'PYEOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
variants = list(dict.fromkeys(r[0] for r in rows))
endpoints = list(dict.fromkeys(r[1] for r in rows))
print(f"== median of {len([r for r in rows if r[0] == variants[0] and r[1] == endpoints[0]])} rounds")
for variant in variants:
    print(variant)
    rps = {}
    for endpoint in endpoints:
        mine = [r for r in rows if r[0] == variant and r[1] == endpoint]
        rps[endpoint], p50, p99 = (statistics.median(float(r[i]) for r in mine) for i in (2, 3, 4))
        print(f"  {endpoint:<22} {rps[endpoint]:>9.0f} req/s   p50 {p50:>7.1f} ms   p99 {p99:>7.1f} ms")
    ratios = [float(s[2]) / float(h[2]) for h, s in zip(
        [r for r in rows if r[0] == variant and r[1] == "/healthz"],
        [r for r in rows if r[0] == variant and r[1] == "subscribe page"],
    )]
    print(f"  subscribe page / healthz throughput: median {statistics.median(ratios):.2f}"
          f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
PYEOF
}

VARIANT="shipped"
if [ "${1:-}" = "--compare" ]; then
  VARIANT="old settings"
  GUNICORN_MAX_REQUESTS=2000 GUNICORN_MAX_REQUESTS_JITTER=200 GUNICORN_PRELOAD=false run_all "before: recycling every 2,000 requests, no preload"
  VARIANT="shipped"
  run_all "shipped settings"
elif [ "${1:-}" = "--against" ]; then
  REV="${2:?--against needs a git revision}"
  BEFORE="$WORK/code-$REV"
  mkdir -p "$BEFORE"
  git -C "$ROOT" archive "$REV" | tar -x -C "$BEFORE"
  for round in $(seq 1 "$ROUNDS"); do
    VARIANT="$REV" CODE="$BEFORE" run_all "round $round of $ROUNDS: the code of $REV"
    VARIANT="this checkout" CODE="$ROOT" run_all "round $round of $ROUNDS: this checkout"
  done
  summary
else
  run_all "shipped settings"
fi
