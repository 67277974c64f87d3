# Shared helpers for the CLI tests: source it after setting TILEC=$1.
set -u
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npy() { python3 "$(dirname "${BASH_SOURCE[0]}")/npyio.py" "$@"; }

ok()   { passed=$((passed + 1)); echo "ok    $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL  $1"; shift; printf '  %s\n' "$@"; }

# expect_error NAME EXPECTED_STDERR_LINE -- COMMAND...
# The command must exit non-zero and print exactly one line on stderr,
# equal to the expected line.
expect_error() {
  local name=$1 want=$2
  shift 3
  local out err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then bad "$name" "exit 0, expected failure"; return; fi
  if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then bad "$name" "stderr is not one line:" "$err"; return; fi
  if [ "$err" != "$want" ]; then bad "$name" "got:  $err" "want: $want"; return; fi
  ok "$name"
}

# expect_error_like NAME REGEX -- COMMAND... (for messages owned by other layers)
expect_error_like() {
  local name=$1 want=$2
  shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then bad "$name" "exit 0, expected failure"; return; fi
  if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then bad "$name" "stderr is not one line:" "$err"; return; fi
  if ! printf '%s' "$err" | grep -Eq -- "$want"; then bad "$name" "got:  $err" "want /$want/"; return; fi
  ok "$name"
}

finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
