#!/usr/bin/env bash
# mutants.sh — runs the mutation catalogue (tests/mutants/); see scripts/mutants.py and
# tests/README.md. Examples: scripts/mutants.sh; scripts/mutants.sh --sample 3;
# scripts/mutants.sh rmsnorm_eps_dropped; scripts/mutants.sh --check.
exec python3 "$(dirname "$0")/mutants.py" "$@"
