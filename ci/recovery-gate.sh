#!/usr/bin/env bash
# A CI recovery gate: runs each scenario, keeps its run directory under
# OUT_DIR/<scenario>, gathers the Markdown summaries into OUT_DIR/summary.md
# (and into $GITHUB_STEP_SUMMARY when GitHub Actions sets it), and exits
#   1  if any scenario failed an expectation: the gate is closed;
#   otherwise the highest other exit code (2 invalid scenario, 3 environment,
#   4 verdict unknown), or 0 when every scenario passed.
# The JUnit files are OUT_DIR/*/junit.xml, the HTML reports OUT_DIR/*/report.html.
#
# Usage: ci/recovery-gate.sh OUT_DIR SCENARIO.toml... [-- extra `crashlab run` arguments]
set -uo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: $0 OUT_DIR SCENARIO.toml... [-- crashlab run arguments]" >&2
    exit 2
fi
out=$1
shift
scenarios=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    scenarios+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
: >"$out/summary.md"
failed=0
worst=0
for scenario in "${scenarios[@]}"; do
    name=$(basename "$scenario" .toml)
    rm -rf "${out:?}/$name"
    crashlab run "$scenario" --out "$out/$name" "$@"
    code=$?
    echo "recovery gate: $name: exit $code" >&2
    if [ -f "$out/$name/summary.md" ]; then
        cat "$out/$name/summary.md" >>"$out/summary.md"
    else
        printf '## crashlab: `%s` did not run (exit %s)\n\n' "$name" "$code" >>"$out/summary.md"
    fi
    [ "$code" -eq 1 ] && failed=1
    [ "$code" -gt "$worst" ] && worst=$code
done
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
fi
if [ "$failed" -eq 1 ]; then
    exit 1
fi
exit "$worst"
