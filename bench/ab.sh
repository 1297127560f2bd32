#!/bin/bash
# A/B of two pfgate binaries in one run: plain HTTP (bench/icount/serve-plain.toml), TestSecurity
# and PfAuthUser_5, server pinned to CPU 0 and wrk to CPU 1, two interleaved rounds of 8 s.
# usage: bash bench/ab.sh OLD_BINARY NEW_BINARY   (from the repo root; wrk from bench/install.sh)
OLD=${1:?old binary}; NEW=${2:?new binary}
P=18556
sed "s/{PORT}/$P/g; s#{ROOT}#$(pwd)#g" bench/icount/serve-plain.toml > "${TMPDIR:-/tmp}/ab.toml"
for round in 1 2; do
for bin in "$OLD" "$NEW"; do
  taskset -c 0 $bin serve --config "${TMPDIR:-/tmp}/ab.toml" > /dev/null 2>&1 &
  pid=$!; sleep 1.5
  for lua in bench/test_security.lua bench/pfauthuser5.lua; do
    taskset -c 1 wrk -t1 -c32 -d2s -s $lua http://127.0.0.1:$P/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx > /dev/null 2>&1
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    r=$(taskset -c 1 wrk -t1 -c32 -d8s -s $lua http://127.0.0.1:$P/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx | awk '/Requests\/sec/{print $2}')
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    echo "$round $bin $(basename $lua) req/s=$r cpu_ticks=$((t1-t0))"
  done
  kill $pid; wait $pid 2>/dev/null
done
done
