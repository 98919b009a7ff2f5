#!/usr/bin/env python3
"""mutants.py — the mutation catalogue (tests/mutants/*.mutant) run against the test suite.

Each mutant plants one realistic bug: an exact piece of original text in one
file and its replacement. For each mutant this script applies it in a scratch
copy of the tree (or in place, --in-place, for a throwaway CI clone), checks
that the original text occurs exactly once (a stale mutant is an error, never
a pass), builds the targets the mutant names (sim preset; ccache makes the
unchanged files free), runs the tests its `kill` regex selects (ctest -R, a
timeout per test, stopping at the first failure), records killed or survived,
and restores the original text. It ends with the mutation score and the time.

    scripts/mutants.sh                     every mutant
    scripts/mutants.sh NAME...             the named mutants
    scripts/mutants.sh --sample 3          3 mutants chosen by a rotating index (--seed S;
                                           default: the day of the year), so successive days
                                           walk the whole catalogue
    scripts/mutants.sh --check             only checks that every mutant applies (no build)
    scripts/mutants.sh --list              names, files and descriptions

Python 3 standard library only (CI has no pip packages). File format: tests/README.md.
"""
import argparse
import datetime
import filecmp
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CATALOGUE = os.path.join(ROOT, "tests", "mutants")
# Not tracked but needed by tests (scripts/fetch_test_data.sh puts it there).
FETCHED = ["tests/fixtures/tokenizers/deepseek_v3/tokenizer.json"]


class Mutant:
    def __init__(self, path):
        self.name = os.path.basename(path)[: -len(".mutant")]
        self.fields = {}
        self.original = self.replacement = None
        section, lines = None, {"original": [], "mutant": []}
        with open(path, encoding="utf-8") as f:
            for raw in f.read().split("\n"):
                if raw == "--- original":
                    section = "original"
                elif raw == "+++ mutant":
                    section = "mutant"
                elif section:
                    lines[section].append(raw)
                elif raw.strip() and not raw.startswith("#"):
                    key, sep, value = raw.partition(":")
                    if not sep:
                        raise ValueError(f"{path}: '{raw}' is not KEY: VALUE")
                    self.fields[key.strip()] = value.strip()
        for key in ("what", "file", "build", "kill"):
            if key not in self.fields:
                raise ValueError(f"{path}: no '{key}:' line")
        # the last line break before "+++ mutant" and at the end of the file belong to the format
        self.original = "\n".join(lines["original"]).rstrip("\n")
        self.replacement = "\n".join(lines["mutant"]).rstrip("\n")
        if not self.original or self.original == self.replacement:
            raise ValueError(f"{path}: the original text is empty or equals the mutant")
        self.file = self.fields["file"]
        self.targets = self.fields["build"].split()
        self.kill = self.fields["kill"]
        self.what = self.fields["what"]
        self.pending = self.fields.get("pending")


def load_catalogue():
    names = sorted(n for n in os.listdir(CATALOGUE) if n.endswith(".mutant"))
    return [Mutant(os.path.join(CATALOGUE, n)) for n in names]


def run(cmd, cwd, log, timeout=None, env=None):
    """Runs cmd, appending its output to log; returns (rc, output)."""
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, text=True, errors="replace")
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{p.stdout}\n")
    return p.returncode, p.stdout


def sync_scratch(tree):
    """Copies the working tree's tracked and unignored files into `tree`, touching only
    files whose content differs, so the scratch build dir rebuilds only what changed."""
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           stdout=subprocess.PIPE).stdout.decode().split("\0")
    files = [f for f in files if f] + [f for f in FETCHED if os.path.exists(os.path.join(ROOT, f))]
    for rel in files:
        src, dst = os.path.join(ROOT, rel), os.path.join(tree, rel)
        if os.path.islink(src):  # tracked symlinks (fixtures point into models/) stay symlinks
            target = os.readlink(src)
            if not (os.path.islink(dst) and os.readlink(dst) == target):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                if os.path.lexists(dst):
                    os.remove(dst)
                os.symlink(target, dst)
            continue
        if not os.path.isfile(src):
            continue
        if os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


def ctest_failures(output):
    """Names in ctest's "The following tests FAILED" list (gtest names may hold spaces)."""
    failed = output.split("The following tests FAILED:")[-1] if "The following tests FAILED:" in output else ""
    names = re.findall(r"^\s*\d+ - (.+?) \([A-Za-z ]+\)\s*$", failed, re.M)
    return [n.split("  # ")[0] for n in names]


def try_mutant(m, tree, build_dir, args, log, env):
    """Returns (verdict, detail, build_s, test_s); verdict is one of killed, survived,
    stale, pending, build-failed, no-tests."""
    path = os.path.join(tree, m.file)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return ("pending", m.pending, 0, 0) if m.pending else ("stale", f"{m.file} does not exist", 0, 0)
    n = text.count(m.original)
    if n != 1:
        if n == 0 and m.pending:
            return "pending", m.pending, 0, 0
        return "stale", f"the original text occurs {n} times in {m.file} (must be once)", 0, 0
    if args.check:
        return "applies", "", 0, 0
    t0 = time.time()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(m.original, m.replacement))
    try:
        rc, out = run(["cmake", "--build", build_dir, "-j", str(args.jobs), "--target"] + m.targets, tree, log,
                      env=env)
        build_s = time.time() - t0
        if rc != 0:
            return "build-failed", "the mutant does not compile (see the log)", build_s, 0
        t1 = time.time()
        rc, out = run(["ctest", "--test-dir", build_dir, "-R", m.kill, "--timeout", str(args.timeout),
                       "--stop-on-failure", "--output-on-failure"], tree, log, env=env)
        test_s = time.time() - t1
        if "No tests were found" in out:
            return "no-tests", f"no test matches '{m.kill}'", build_s, test_s
        ran = re.search(r"tests passed, (\d+) tests failed out of (\d+)", out)
        if rc != 0:
            failed = ctest_failures(out)
            return "killed", f"by {failed[0] if failed else '?'}", build_s, test_s
        return "survived", f"{ran.group(2) if ran else '?'} tests passed", build_s, test_s
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def choose(catalogue, args):
    if args.names:
        by_name = {m.name: m for m in catalogue}
        unknown = [n for n in args.names if n not in by_name]
        if unknown:
            sys.exit(f"mutants: unknown mutant(s): {' '.join(unknown)} (--list shows them)")
        return [by_name[n] for n in args.names]
    if args.sample:
        # a window of `sample` consecutive mutants that moves by `sample` each day
        seed = args.seed if args.seed is not None else datetime.date.today().timetuple().tm_yday
        start = (seed * args.sample) % len(catalogue)
        return [catalogue[(start + i) % len(catalogue)] for i in range(min(args.sample, len(catalogue)))]
    return catalogue


def prepare_tree(args, env):
    """The tree the mutants go into and its sim build dir."""
    if args.in_place:
        return ROOT, os.path.join(ROOT, "build", "sim")
    scratch = os.path.abspath(args.scratch)
    tree = os.path.join(scratch, "tree")
    os.makedirs(tree, exist_ok=True)
    sync_scratch(tree)
    build_dir = os.path.join(tree, "build", "sim")
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        rc, _ = run(["cmake", "--preset", "sim"], tree, args.log, env=env)
        if rc != 0:
            sys.exit(f"mutants: configuring the scratch tree failed (see {args.log})")
    return tree, build_dir


def main():
    ap = argparse.ArgumentParser(description="Run the mutation catalogue (tests/mutants).")
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--sample", type=int, help="run N mutants chosen by a rotating index")
    ap.add_argument("--seed", type=int, help="the rotating index (default: day of the year)")
    ap.add_argument("--check", action="store_true", help="only check that the mutants apply")
    ap.add_argument("--list", action="store_true", help="list the catalogue")
    ap.add_argument("--in-place", action="store_true",
                    help="mutate this tree and build in build/sim (a throwaway CI clone only)")
    ap.add_argument("--scratch", default=os.path.join(ROOT, "build", "mutants"),
                    help="scratch dir for the copy of the tree (default: build/mutants)")
    ap.add_argument("--jobs", type=int, default=2, help="build jobs (default 2)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test (default 600)")
    ap.add_argument("--log", help="build and test output (default: <scratch>/mutants.log)")
    args = ap.parse_args()

    # a CI timeout's SIGTERM unwinds like Ctrl-C: the mutated file gets its original text back
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    catalogue = load_catalogue()
    if args.list:
        for m in catalogue:
            print(f"{m.name:36} {m.file:26} {m.what}{'  [pending: ' + m.pending + ']' if m.pending else ''}")
        return 0
    chosen = choose(catalogue, args)
    if not args.log and args.check:
        args.log = os.devnull  # nothing is built or run
    if not args.log:
        os.makedirs(args.scratch, exist_ok=True)
        args.log = os.path.join(os.path.abspath(args.scratch), "mutants.log")
    open(args.log, "w").close()

    env = dict(os.environ)
    env["PATH"] = "/usr/local/cuda/bin:" + env.get("PATH", "")
    if not args.in_place:
        # The scratch tree always sits at the same path: relative paths and no CWD in the
        # hash let ccache serve every unchanged file from an earlier scratch build.
        env["CCACHE_BASEDIR"] = os.path.abspath(args.scratch)
        env["CCACHE_NOHASHDIR"] = "1"
    start = time.time()
    if args.check:
        tree, build_dir = ROOT, None
    else:
        tree, build_dir = prepare_tree(args, env)
    setup_s = time.time() - start

    results = []
    for m in chosen:
        verdict, detail, build_s, test_s = try_mutant(m, tree, build_dir, args, args.log, env)
        results.append((m, verdict))
        if args.check:
            print(f"{m.name:36} {verdict:9} {detail}", flush=True)
        else:
            print(f"{m.name:36} {verdict:12} {build_s:5.0f}s build {test_s:5.0f}s test  {detail}", flush=True)

    if args.in_place and not args.check:
        # every mutated file is back: rebuild what the mutants touched so build/sim is the tree's again
        targets = sorted({t for m, v in results if v not in ("stale", "pending") for t in m.targets})
        if targets:
            run(["cmake", "--build", build_dir, "-j", str(args.jobs), "--target"] + targets, tree, args.log, env=env)

    counted = [v for _, v in results if v != "pending"]
    killed = counted.count("killed" if not args.check else "applies")
    bad = [m.name for m, v in results if v not in ("killed", "pending", "applies")]
    pending = [m.name for m, v in results if v == "pending"]
    word = "apply" if args.check else "killed"
    print(f"mutation score: {killed}/{len(counted)} {word}"
          + (f"; pending (their code is not in this tree yet): {' '.join(pending)}" if pending else "")
          + f"; {time.time() - start:.0f}s in all ({setup_s:.0f}s preparing the tree); log: {args.log}")
    if bad:
        print(f"mutants: not killed, stale or broken: {' '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
