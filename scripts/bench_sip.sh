#!/usr/bin/env bash
# The SIP dialer's answer-path throughput beside sipp's own UAC, in one run,
# on loopback: N calls at concurrency C against a sipp UAS that answers and
# waits for the BYE (tests/sip/answer.xml). Prints calls/s, CPU seconds and
# peak memory for both. Needs sipp (Debian's sip-tester) and a release build.
#
#   scripts/bench_sip.sh [N] [C]        (default 10000 100)
#   T1=50 scripts/bench_sip.sh          (the trunk file's t1_ms; 500 by default)
#   FLOWC=/tmp/old/flowc scripts/bench_sip.sh   (another build of flowc)
#   ROUNDS=8 scripts/bench_sip.sh       (8 alternations of flowc and sipp, and their medians)
#   PROFILE="perf record -g -o perf.data" scripts/bench_sip.sh   (flowc's run under a profiler)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
C=${2:-100}
# FLOWC=PATH: that binary (another commit's build, for a comparison).
flowc=${FLOWC:-}
if [ -z "$flowc" ]; then
  cargo build --release --quiet
  flowc=${CARGO_TARGET_DIR:-target}/release/flowc
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > "$work/bench.flow" <<EOF
contact { phone: phone }

calendar always {
  hours mon-sun 00:00-24:00
}

compliance house {
  max attempts 10 per 24h
}

flow bench {
  timezone "UTC"
  calendar always
  compliance house
  concurrency $C
  step call {
    dial contact.phone timeout 20s
    on answered -> end completed
    on other -> end failed
  }
}
EOF
python3 - "$N" > "$work/list.csv" <<'EOF'
import sys
n = int(sys.argv[1])
print("phone")
for k in range(n):
    print(f"+3361{k:07d}")
EOF
printf "t1_ms = %s\nlocal = \"127.0.0.1:0\"\n" "${T1:-500}" > "$work/trunk.toml"

# One round: flowc against a sipp UAS, then sipp's own UAC against another.
# ROUNDS=R alternates them R times (the figures of a shared machine move by a
# tenth from one minute to the next) and ends with the medians.
rounds=${ROUNDS:-1}
for _ in $(seq 1 "$rounds"); do
  p1=$(port)
  sipp -sf tests/sip/answer.xml -i 127.0.0.1 -p "$p1" -nostdin -m "$N" -buff_size 4000000 \
    -trace_err -error_file "$work/uas1.err" > /dev/null 2>&1 &
  uas1=$!
  sleep 0.5
  rm -f "$work"/run.db*
  start=$(date +%s.%N)
  ${PROFILE:-} /usr/bin/time -f "%U %S %M %R" -o "$work/flowc.time" \
    "$flowc" run "$work/bench.flow" --contacts "$work/list.csv" \
    --dialer "sip:127.0.0.1:$p1" --trunk "$work/trunk.toml" --db "$work/run.db" --format json \
    > "$work/report.json" 2> "$work/flowc.err"
  end=$(date +%s.%N)
  wait $uas1 && uas1_status=0 || uas1_status=$?
  [ "$uas1_status" = 0 ] || echo "the UAS aborted $(grep -c 'Aborting call' "$work/uas1.err" || true) calls, the first: $(grep -m1 -o 'Aborting call[^:]*: [^(]*' "$work/uas1.err" || true)"
  answered=$(python3 -c "import json; print(json.load(open('$work/report.json'))['contactsCompleted'])")
  read -r fu fs fm fr < <(tail -1 "$work/flowc.time")

  p2=$(port)
  sipp -sf tests/sip/answer.xml -i 127.0.0.1 -p "$p2" -nostdin -m "$N" -buff_size 4000000 > /dev/null 2>&1 &
  uas2=$!
  sleep 0.5
  start2=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$work/sipp.time" \
    sipp -sn uac "127.0.0.1:$p2" -i 127.0.0.1 -p "$(port)" -nostdin -m "$N" -l "$C" -r 10000 -d 0 -buff_size 4000000 \
    > /dev/null 2>&1 && uac_status=0 || uac_status=$?
  end2=$(date +%s.%N)
  wait $uas2 || true
  read -r su ss sm < <(tail -1 "$work/sipp.time")

  python3 - <<EOF | tee -a "$work/rounds.txt"
n = $N
f = n / ($end - $start)
s = n / ($end2 - $start2)
print(f"calls {n}, concurrency $C, loopback")
print(f"flowc run --dialer sip: {f:8.0f} calls/s  answered {$answered}/{n}  sipp UAS exit $uas1_status  "
      f"CPU {($fu + $fs) / n * 1000:.2f} s per 1,000 calls  peak {$fm / 1024:.0f} MiB")
print(f"  (flowc: user {$fu} s, system {$fs} s, {$fr} page faults)")
print(f"sipp -sn uac          : {s:8.0f} calls/s  exit $uac_status  "
      f"CPU {($su + $ss) / n * 1000:.2f} s per 1,000 calls  peak {$sm / 1024:.0f} MiB")
print(f"flowc / sipp: {f / s * 100:.0f}%")
EOF
done
if [ "$rounds" -gt 1 ]; then
  python3 - "$work/rounds.txt" <<'EOF'
import re, statistics, sys
text = open(sys.argv[1]).read()
flowc = [int(x) for x in re.findall(r"sip:\s+(\d+) calls/s", text)]
sipp = [int(x) for x in re.findall(r"uac\s+:\s+(\d+) calls/s", text)]
ratios = [int(x) for x in re.findall(r"flowc / sipp: (\d+)%", text)]
print(f"{len(ratios)} rounds: flowc median {statistics.median(flowc):.0f} calls/s, "
      f"sipp median {statistics.median(sipp):.0f} calls/s, "
      f"flowc / sipp median {statistics.median(ratios):.0f}% (range {min(ratios)}-{max(ratios)}%)")
EOF
fi
