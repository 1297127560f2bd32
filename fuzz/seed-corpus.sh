#!/usr/bin/env bash
# Rebuilds fuzz/corpus/<target>/ from the repository's fixtures (fuzz/seed_corpus.py says which).
# Adds to an existing corpus; `rm -rf fuzz/corpus` first for seeds only.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 fuzz/seed_corpus.py
