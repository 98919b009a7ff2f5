#!/bin/sh
# cli_expect.sh — runs one command for ctest and checks its exit status AND its output
# (ctest's PASS_REGULAR_EXPRESSION alone ignores the exit status: a command that prints the
# expected text and then fails would pass).
#
#   cli_expect.sh [-i STDIN_TEXT] [-f FILE GOLDEN TOL] RC REGEX -- COMMAND ARGS...
#
# RC      the exit status the command must end with
# REGEX   a Perl regex the combined stdout+stderr must match ('.' matches newlines too; perl is
#         part of every Debian system)
# -i      text fed to the command's stdin (printf %b: "\n" is a newline)
# -f      after the command, FILE (fp32 little-endian) must hold as many floats as GOLDEN and
#         each must be within TOL of GOLDEN's (absolute)
# Every argument's @TMP@ becomes a fresh private directory (no file names shared between
# concurrent runs), removed at the end. The output is printed, then "exit=N", so ctest's
# SKIP_REGULAR_EXPRESSION (QILIN_ERR_NO_DEVICE in the cuda build without a GPU) still applies.
set -u
stdin_text= file= golden= tol=
while :; do
  case "${1-}" in
    -i) stdin_text=$2; shift 2 ;;
    -f) file=$2 golden=$3 tol=$4; shift 4 ;;
    *) break ;;
  esac
done
[ $# -ge 4 ] && [ "$3" = "--" ] || { echo "usage: cli_expect.sh [-i TEXT] [-f FILE GOLDEN TOL] RC REGEX -- CMD..." >&2; exit 2; }
want_rc=$1 regex=$2
shift 3
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
n=$#
while [ $n -gt 0 ]; do # rewrite @TMP@ in every argument, keeping the argument list intact
  a=$1; shift; n=$((n - 1))
  while case $a in *@TMP@*) true ;; *) false ;; esac; do a="${a%%@TMP@*}$tmp${a#*@TMP@}"; done
  set -- "$@" "$a"
done
file=$(printf '%s' "$file" | sed "s|@TMP@|$tmp|g")

printf '%b' "$stdin_text" | "$@" >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
echo "exit=$rc"
grep -q QILIN_ERR_NO_DEVICE "$tmp/out" && exit 0 # ctest reports it as skipped
fail=0
[ "$rc" -eq "$want_rc" ] || { echo "cli_expect: exit status $rc, expected $want_rc"; fail=1; }
RX=$regex perl -0777 -ne 'exit(/$ENV{RX}/s ? 0 : 1)' "$tmp/out" || { echo "cli_expect: output does not match: $regex"; fail=1; }
if [ -n "$file" ]; then
  if [ ! -f "$file" ]; then
    echo "cli_expect: $file was not written"; fail=1
  else
    # od prints each float with 9 significant digits: enough for any TOL above 1e-6 relative.
    od -An -v -f -w4 "$file" >"$tmp/got.txt"
    od -An -v -f -w4 "$golden" >"$tmp/want.txt"
    paste "$tmp/got.txt" "$tmp/want.txt" | awk -v tol="$tol" -v nw="$(wc -l <"$tmp/want.txt")" '
      NF != 2 { bad = "lengths differ"; exit }
      { d = $1 - $2; if (d < 0) d = -d; if (d > worst) worst = d; if (!(d <= tol)) { bad = "float " NR - 1 ": " $1 " vs " $2; exit } }
      END { if (!bad && NR != nw) bad = "lengths differ";
            if (bad) { print "cli_expect: logits differ from the golden file: " bad; exit 1 }
            printf "cli_expect: %d floats within %g of the golden file (worst %.3g)\n", NR, tol, worst }' || fail=1
  fi
fi
exit $fail
