#!/usr/bin/env python3
"""sass_report.py — what the cuda build's kernels compiled to, readable without a GPU.

Reads the SASS (`cuobjdump -sass`) and the resource usage (`cuobjdump -res-usage`)
of the cuda preset's kernel library (build/cuda/cuda/libqilin_cuda.a) and prints,
per kernel and arch (sm_80, sm_90a):

  - the instruction mix of its loops and of the whole kernel: FFMA, HMMA/HGMMA/IMMA
    (tensor cores), LDG by width (32/64/128-bit, sub-word), generic LD, LDGSTS
    (cp.async), LDSM, LDS, STS, BAR, SHFL, LDL/STL (local memory);
    "loop" = every instruction inside the address range of a backward branch
    (from its target to the branch), each counted once: nested and sibling loops
    fold together, and warp-convergence retry loops count as loops too;
  - registers per thread, stack frame, static shared memory;
  - theoretical occupancy of the sm_80 code on an A100 and of the sm_90a code on
    an H100, from registers, static + declared dynamic shared memory and the block
    size declared in cuda/kernel_properties.txt (launch sizes are not in the SASS).

--check fails (exit 1, one line per finding naming kernel, arch, property and
what the SASS shows) when any kernel uses local memory (LDL/STL: register spills,
or a local array the compiler could not keep in registers — the same cost), or
when a kernel's SASS contradicts a property declared for it in
cuda/kernel_properties.txt, or when a declaration matches no kernel.

Python 3 standard library only; needs cuobjdump and nvdisasm (the CUDA toolkit's,
or NVIDIA's PyPI wheels nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm, which
scripts/install_deps.sh installs when the toolkit lacks them; $QILIN_CUOBJDUMP
overrides) and c++filt (binutils).
The --sass-file/--res-file options read saved cuobjdump output instead
(tests/fixtures/sass/).
"""
import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LIB = os.path.join(ROOT, "build", "cuda", "cuda", "libqilin_cuda.a")
DEFAULT_PROPS = os.path.join(ROOT, "cuda", "kernel_properties.txt")

# The GPU each arch's code is scored on, and its per-SM limits (CUDA occupancy
# calculator's figures for compute capability 8.0 and 9.0).
GPUS = {
    "sm_80": dict(gpu="A100", regs_per_sm=65536, max_warps=64, max_blocks=32,
                  smem_per_sm=167936, smem_per_block=166912, smem_reserved=1024),
    "sm_90a": dict(gpu="H100", regs_per_sm=65536, max_warps=64, max_blocks=32,
                   smem_per_sm=233472, smem_per_block=232448, smem_reserved=1024),
}
GPUS["sm_90"] = GPUS["sm_90a"]

# The columns of the instruction mix, in print order.
MIX_KEYS = ["FFMA", "HFMA2", "HMMA", "HGMMA", "IMMA", "QGMMA", "LDG.32", "LDG.64", "LDG.128",
            "LDG.sub", "LD", "LDGSTS", "LDSM", "LDS", "STS", "STG", "BAR", "SHFL", "LDL", "STL",
            "total"]
TENSOR_OPS = ("HMMA", "HGMMA", "IMMA", "QGMMA")


def fail_setup(msg):
    print("sass_report: " + msg, file=sys.stderr)
    sys.exit(2)


def find_cuobjdump():
    """cuobjdump from $QILIN_CUOBJDUMP, the toolkit, PATH or a pip wheel."""
    env = os.environ.get("QILIN_CUOBJDUMP")
    if env:
        return env
    cands = ["/usr/local/cuda/bin/cuobjdump", shutil.which("cuobjdump")]
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    for d in dirs:
        cands += sorted(glob.glob(os.path.join(d, "nvidia", "cu*", "bin", "cuobjdump")))
        cands += sorted(glob.glob(os.path.join(d, "nvidia", "cuda_cuobjdump", "bin", "cuobjdump")))
        cands += [os.path.join(d, "triton", "backends", "nvidia", "bin", "cuobjdump")]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    fail_setup("cuobjdump not found (CUDA toolkit bin/, PATH, or `pip install "
               "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm` as scripts/install_deps.sh does; "
               "or set QILIN_CUOBJDUMP)")


def run_tool(args):
    # cuobjdump -sass runs nvdisasm, looked up on PATH: the one beside it first
    # (the PyPI wheels put both in nvidia/cu13/bin/).
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(os.path.abspath(args[0])) + os.pathsep + env.get("PATH", "")
    try:
        res = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, env=env)
    except OSError as e:
        fail_setup("%s: %s" % (args[0], e))
    if res.returncode != 0:
        fail_setup("%s failed (%d): %s" % (" ".join(args), res.returncode, res.stderr.strip()))
    return res.stdout


def demangle(names):
    names = list(names)
    if not names:
        return {}
    tool = shutil.which("c++filt")
    if not tool:
        return {n: n for n in names}
    res = subprocess.run([tool], input="\n".join(names) + "\n", stdout=subprocess.PIPE,
                         universal_newlines=True)
    out = res.stdout.split("\n")
    return {n: (out[i] if i < len(out) and out[i] else n) for i, n in enumerate(names)}


def analyse_cubin(job):
    """The per-kernel records of one cubin, cached by its content hash."""
    tool, path, cache = job
    arch = re.search(r"\.(sm_\w+)\.cubin$", path)
    header = "arch = %s\n" % (arch.group(1) if arch else "sm_unknown")
    # Keyed by the cubin and this script: a changed analysis never reads old records.
    with open(path, "rb") as f, open(os.path.abspath(__file__), "rb") as me:
        digest = hashlib.sha256(f.read() + me.read()).hexdigest()[:32]
    cached = os.path.join(cache, digest + ".json")
    if os.path.isfile(cached):
        with open(cached) as f:
            return json.load(f)
    records = analyse(header + run_tool([tool, "-sass", path]),
                      header + run_tool([tool, "-res-usage", path]),
                      os.path.basename(path).split(".")[0])
    tmp = "%s.%d.tmp" % (cached, os.getpid())  # two runs at once never share a file
    with open(tmp, "w") as f:
        json.dump(records, f)
    os.replace(tmp, cached)
    return records


def analyse_library(tool, lib):
    """Records of every kernel in lib. Disassembling is the slow part (tens of
    CPU-seconds for the whole library), so cubins are done in parallel and
    each cubin's records are cached under the library's folder by content
    hash: after a rebuild only the changed files cost."""
    cache = os.path.join(os.path.dirname(os.path.abspath(lib)), ".sass_cache")
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sass_report_") as tmp:
        try:
            subprocess.run([tool, "-xelf", "all", os.path.abspath(lib)], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.CalledProcessError) as e:
            fail_setup("%s -xelf all %s: %s" % (tool, lib, e))
        cubins = sorted(glob.glob(os.path.join(tmp, "*.cubin")))
        if not cubins:
            fail_setup("%s: no cubin inside (not a cuda preset build?)" % lib)
        jobs = [(tool, c, cache) for c in cubins]
        with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return [r for recs in pool.map(analyse_cubin, jobs) for r in recs]


# ---- parsing cuobjdump's text ----

ARCH_RE = re.compile(r"^\s*(?:arch =|code for) (sm_\w+)")
RES_RE = re.compile(r"^\s*Function (\S+):\s*$")
BRANCH_TARGET_RE = re.compile(r"(0x[0-9a-f]+|\.L_x_\d+)")


def parse_res_usage(text):
    """{(arch, mangled): {"regs", "stack", "shared", "local"}}"""
    usage, arch, func = {}, None, None
    for line in text.splitlines():
        m = ARCH_RE.match(line)
        if m:
            arch = m.group(1)
            continue
        m = RES_RE.match(line)
        if m:
            func = m.group(1)
            continue
        if func and arch and "REG:" in line:
            fields = dict(re.findall(r"([A-Z]+(?:\[\d+\])?):(\d+)", line))
            usage[(arch, func)] = dict(regs=int(fields.get("REG", 0)),
                                       stack=int(fields.get("STACK", 0)),
                                       shared=int(fields.get("SHARED", 0)),
                                       local=int(fields.get("LOCAL", 0)))
            func = None
    return usage


TOKEN_RE = re.compile(r"^[ \t]*(?:(?:arch =|code for) (?P<arch>sm_\w+)"
                      r"|Function : (?P<func>\S+)"
                      r"|(?P<label>\.L_x_\d+):"
                      r"|/\*(?P<addr>[0-9a-f]+)\*/[ \t]+(?:@!?U?P[T0-9]+[ \t]+)?(?P<op>[A-Z][A-Z0-9_.]*)[ \t]*(?P<args>[^;\n]*);)",
                      re.M)


def parse_sass(text):
    """{(arch, mangled): [(addr, opcode, branch target or None)]}. One regex pass
    over the text: the disassembly of the whole library is ~600k lines."""
    kernels, arch, insns, labels, pending = {}, None, None, None, []
    for m in TOKEN_RE.finditer(text):
        kind = "insn" if m.group("op") else m.lastgroup
        if kind == "arch":
            arch = m.group("arch")
        elif kind == "func":
            insns, labels, pending = [], {}, []
            kernels[(arch, m.group("func"))] = (insns, labels)
        elif insns is None:
            continue
        elif kind == "label":
            pending.append(m.group("label"))
        else:
            addr = int(m.group("addr"), 16)
            for lab in pending:
                labels[lab] = addr
            pending = []
            insns.append((addr, m.group("op"), m.group("args")))
    return {k: resolve_branches(*v) for k, v in kernels.items()}


def resolve_branches(insns, labels):
    out = []
    for addr, op, operands in insns:
        target = None
        if op.split(".")[0] in ("BRA", "JMP", "BRX"):
            m = BRANCH_TARGET_RE.search(operands)
            if m:
                t = m.group(1)
                target = int(t, 16) if t.startswith("0x") else labels.get(t)
        out.append((addr, op, target))
    return out


# ---- analysis ----

def classify(op):
    """The mix column an opcode counts under, or None."""
    parts = op.split(".")
    base, mods = parts[0], set(parts[1:])
    if base in ("FFMA", "HFMA2", "HMMA", "HGMMA", "IMMA", "QGMMA", "LDGSTS", "LDSM", "LDS",
                "STS", "STG", "SHFL", "LDL", "STL", "LD"):
        if base == "HFMA2" and "MMA" in mods:
            return None  # HFMA2.MMA is a register move on the tensor pipe, not math
        return base
    if base == "BAR":
        return "BAR"
    if base == "LDG":
        if "128" in mods:
            return "LDG.128"
        if "64" in mods:
            return "LDG.64"
        if mods & {"U8", "S8", "U16", "S16"}:
            return "LDG.sub"
        return "LDG.32"
    return None


def loop_addresses(insns):
    """Addresses inside some backward branch's range (a branch to itself — the
    end-of-kernel trap — is not a loop)."""
    ranges = sorted((target, addr) for addr, _, target in insns
                    if target is not None and target < addr)
    inside, i, reach = set(), 0, -1
    for addr, _, _ in insns:  # insns are in address order; sweep the sorted ranges
        while i < len(ranges) and ranges[i][0] <= addr:
            reach = max(reach, ranges[i][1])
            i += 1
        if addr <= reach:
            inside.add(addr)
    return inside


def mix_of(insns, only=None):
    mix = {k: 0 for k in MIX_KEYS}
    for addr, op, _ in insns:
        if only is not None and addr not in only:
            continue
        if op == "NOP":
            continue
        mix["total"] += 1
        col = classify(op)
        if col:
            mix[col] += 1
    return mix


def occupancy(arch, regs, smem_bytes, block):
    """Theoretical occupancy (active warps / max warps) of one SM, or None
    when the block size is unknown."""
    g = GPUS.get(arch)
    if not g or not block:
        return None
    warps_per_block = -(-block // 32)
    limit_threads = g["max_warps"] // warps_per_block
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256  # allocated per warp, 256 at a time
    warps_by_regs = (g["regs_per_sm"] // 4 // regs_per_warp) * 4  # four SM sub-partitions
    limit_regs = warps_by_regs // warps_per_block
    # The 1 KB the runtime reserves per block: sm_90 cubins already count it in
    # their static shared memory when the kernel uses any.
    reserved = 0 if arch.startswith("sm_90") and smem_bytes >= g["smem_reserved"] else g["smem_reserved"]
    if smem_bytes > g["smem_per_block"]:
        limit_smem = 0
    else:
        per_block = -(-(smem_bytes + reserved) // 128) * 128
        limit_smem = g["smem_per_sm"] // per_block
    blocks = min(limit_threads, limit_regs, limit_smem, g["max_blocks"])
    limiter = [n for n, v in (("threads", limit_threads), ("regs", limit_regs),
                              ("smem", limit_smem), ("blocks", g["max_blocks"])) if v == blocks][0]
    return dict(gpu=g["gpu"], blocks_per_sm=blocks,
                occupancy=round(blocks * warps_per_block / g["max_warps"], 3), limiter=limiter)


# ---- declared properties (cuda/kernel_properties.txt) ----

KNOWN_PROPS = {"tensor_cores", "vec128_loads", "vec128_loop_loads", "no_spills", "block",
               "dyn_smem", "max_regs"}


def parse_props(path):
    """[(pattern text, compiled regex, {prop: value}, {prop: arch or None}, line no.)]"""
    decls = []
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        fail_setup("%s: %s" % (path, e.strerror))
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        pattern, rest = words[0], words[1:]
        try:
            rx = re.compile(pattern[3:]) if pattern.startswith("re:") else re.compile(re.escape(pattern))
        except re.error as e:
            fail_setup("%s:%d: bad regex %r: %s" % (path, n, pattern, e))
        props, archs = {}, {}
        for w in rest:
            name, _, arch = w.partition("@")
            key, eq, val = name.partition("=")
            if key not in KNOWN_PROPS:
                fail_setup("%s:%d: unknown property %r (known: %s)" % (path, n, key, ", ".join(sorted(KNOWN_PROPS))))
            if eq and not val.isdigit():
                fail_setup("%s:%d: %s needs a number, not %r" % (path, n, key, val))
            props[key] = int(val) if eq else True
            archs[key] = arch or None
        if not rest:
            fail_setup("%s:%d: pattern %r declares no property" % (path, n, pattern))
        decls.append((pattern, rx, props, archs, n))
    return decls


def declared_for(decls, name, arch):
    props, used = {}, []
    for i, (_, rx, p, archs, _) in enumerate(decls):
        if rx.search(name):
            used.append(i)
            for k, v in p.items():
                if archs[k] in (None, arch):
                    props[k] = v
    return props, used


def check_kernel(k):
    """Findings: (property, what the SASS shows) for one kernel record."""
    found = []
    whole, loop = k["mix"], k["loop_mix"]
    local = whole["LDL"] + whole["STL"]
    if local or k["stack"]:
        found.append(("no_spills", "%d LDL + %d STL (local memory), stack frame %d bytes"
                      % (whole["LDL"], whole["STL"], k["stack"])))
    p = k["declared"]
    if p.get("tensor_cores") and not any(whole[o] for o in TENSOR_OPS):
        found.append(("tensor_cores", "no HMMA/HGMMA/IMMA/QGMMA instruction (FFMA %d, HFMA2 %d)"
                      % (whole["FFMA"], whole["HFMA2"])))
    for prop, mix in (("vec128_loads", whole), ("vec128_loop_loads", loop)):
        if p.get(prop):
            narrow = mix["LDG.32"] + mix["LDG.64"] + mix["LDG.sub"] + mix["LD"]
            if narrow or not mix["LDG.128"]:
                found.append((prop, "LDG.128 %d, narrower global loads: LDG.32 %d LDG.64 %d "
                              "sub-word %d generic LD %d" % (mix["LDG.128"], mix["LDG.32"],
                                                             mix["LDG.64"], mix["LDG.sub"], mix["LD"])))
    if "max_regs" in p and k["regs"] > p["max_regs"]:
        found.append(("max_regs=%d" % p["max_regs"], "%d registers" % k["regs"]))
    return found


# ---- report ----

def analyse(sass_text, res_text, obj):
    """Per kernel and arch: resources and instruction mix, before declarations."""
    code = parse_sass(sass_text)
    usage = parse_res_usage(res_text)
    records = []
    for (arch, mangled), insns in code.items():
        u = usage.get((arch, mangled), dict(regs=0, stack=0, shared=0, local=0))
        inside = loop_addresses(insns)
        records.append(dict(mangled=mangled, object=obj, arch=arch, regs=u["regs"],
                            stack=u["stack"] + u["local"], static_smem=u["shared"],
                            has_loop=bool(inside), mix=mix_of(insns),
                            loop_mix=mix_of(insns, inside)))
    return records


def build_records(raw, decls, name_filter):
    """Adds demangled names, declarations and occupancy; sorts by name."""
    names = demangle(sorted({r["mangled"] for r in raw}))
    records, used = [], set()
    for r in raw:
        name = names[r["mangled"]]
        if name_filter and not re.search(name_filter, name):
            continue
        declared, hit = declared_for(decls, name, r["arch"])
        used.update(hit)
        block = declared.get("block")
        smem = r["static_smem"] + declared.get("dyn_smem", 0)
        rec = dict(kernel=name)
        rec.update(r)
        rec.update(block=block, dyn_smem=declared.get("dyn_smem"), declared=declared,
                   occupancy=occupancy(r["arch"], r["regs"], smem, block))
        records.append(rec)
    records.sort(key=lambda r: (r["kernel"], r["arch"], r["object"]))
    return records, used


def short(name, width=72):
    """The name without "void " and its parameter list, cut to width."""
    if name.startswith("void "):
        name = name[5:]
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                name = name[:i]
                break
    return name if len(name) <= width else name[:width - 3] + "..."


def print_table(records):
    cols = ["FFMA", "HMMA", "HGMMA", "LDG.32", "LDG.64", "LDG.128", "LDGSTS", "LDSM", "LDS",
            "STS", "BAR", "LDL", "STL", "total"]
    print("Loop mix = instructions inside backward-branch ranges (whole kernel in brackets when it has no loop).")
    print("occ = theoretical occupancy: sm_80 code on A100, sm_90a code on H100 (block size declared).")
    head = "%-72s %-6s %4s %5s %6s" % ("kernel", "arch", "regs", "stack", "smem")
    head += "".join(" %6s" % c.replace("LDG.", "G") for c in cols) + "  occ"
    print(head)
    for r in records:
        mix = r["loop_mix"] if r["has_loop"] else r["mix"]
        line = "%-72s %-6s %4d %5d %6d" % (short(r["kernel"]), r["arch"], r["regs"], r["stack"],
                                          r["static_smem"])
        line += "".join(" %6s" % (mix[c] if r["has_loop"] else "[%d]" % mix[c]) for c in cols)
        o = r["occupancy"]
        line += "  %s" % ("%.2f (%s, %d blk/SM, block %d)" % (o["occupancy"], o["limiter"],
                                                                 o["blocks_per_sm"], r["block"])
                          if o else "? (no block declared)")
        print(line)
    tc = sum(1 for r in records if any(r["mix"][o] for o in TENSOR_OPS))
    print("%d kernel/arch pairs, %d with tensor-core instructions, %d with local memory"
          % (len(records), tc, sum(1 for r in records if r["mix"]["LDL"] + r["mix"]["STL"] or r["stack"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=DEFAULT_LIB, help="library or object with the kernels (default: %(default)s)")
    ap.add_argument("--props", default=DEFAULT_PROPS, help="declared properties (default: %(default)s)")
    ap.add_argument("--sass-file", help="saved `cuobjdump -sass` output instead of running it")
    ap.add_argument("--res-file", help="saved `cuobjdump -res-usage` output instead of running it")
    ap.add_argument("--filter", help="regex over demangled kernel names")
    ap.add_argument("--json", action="store_true", help="print JSON records instead of the table")
    ap.add_argument("--check", action="store_true", help="fail on local memory or a contradicted declaration")
    args = ap.parse_args()
    t0 = time.time()

    if args.sass_file or args.res_file:
        if not (args.sass_file and args.res_file):
            fail_setup("--sass-file and --res-file go together")
        raw = analyse(open(args.sass_file).read(), open(args.res_file).read(),
                      os.path.basename(args.sass_file))
        source = args.sass_file
    else:
        if not os.path.isfile(args.lib):
            fail_setup("%s: no such file (build the cuda preset: cmake --build --preset cuda "
                       "--target qilin_cuda)" % args.lib)
        raw = analyse_library(find_cuobjdump(), args.lib)
        source = args.lib
    decls = parse_props(args.props)
    records, used = build_records(raw, decls, args.filter)
    if not records:
        fail_setup("%s: no kernel code found%s" % (source, " matching --filter" if args.filter else ""))

    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
    elif not args.check:
        print_table(records)
    if not args.check:
        return 0

    findings = []
    for r in records:
        for prop, shows in check_kernel(r):
            findings.append("%s [%s, %s]: %s violated: %s" % (r["kernel"], r["arch"], r["object"],
                                                                prop, shows))
    if not args.filter:
        for i, (pattern, _, _, _, n) in enumerate(decls):
            if i not in used:
                findings.append("%s:%d: declaration %r matches no kernel" % (args.props, n, pattern))
    for f in findings:
        print("sass check: " + f)
    print("sass check: %d kernel/arch pairs, %d declarations, %d finding(s), %.1f s"
          % (len(records), len(decls), len(findings), time.time() - t0))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
