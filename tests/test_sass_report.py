#!/usr/bin/env python3
"""test_sass_report.py — scripts/sass_report.py on saved cuobjdump output of
tests/fixtures/sass/planted.cu (no nvcc, cuobjdump or GPU needed): the check reports
the planted spill, the declared-but-missing tensor cores, the declared-but-narrow
loads and the stale declaration, and nothing about the kernels that keep their
declarations; the JSON figures (HMMA count, loop mix, occupancy) are what the
SASS shows."""
import json
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "sass")
SCRIPT = os.path.join(ROOT, "scripts", "sass_report.py")


def run(*args, props="planted_properties.txt"):
    cmd = [sys.executable, SCRIPT, "--sass-file", os.path.join(FIX, "planted.sass.txt"),
           "--res-file", os.path.join(FIX, "planted.res.txt"), "--props", os.path.join(FIX, props)]
    res = subprocess.run(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    return res.returncode, res.stdout, res.stderr


class Check(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rc, cls.out, cls.err = run("--check")
        cls.findings = [l for l in cls.out.splitlines() if "violated" in l or "matches no kernel" in l]

    def test_fails(self):
        self.assertEqual(self.rc, 1, self.out + self.err)

    def find(self, kernel, arch, prop):
        return [f for f in self.findings if f.startswith("sass check: %s [%s," % (kernel, arch))
                and (" %s violated" % prop) in f]

    def test_spill_reported_per_arch(self):
        for arch in ("sm_80", "sm_90a"):
            hits = self.find("planted_spill", arch, "no_spills")
            self.assertEqual(len(hits), 1, self.out)
            self.assertRegex(hits[0], r"\d+ LDL \+ \d+ STL \(local memory\), stack frame 160 bytes")

    def test_missing_tensor_cores_reported(self):
        for arch in ("sm_80", "sm_90a"):
            hits = self.find("planted_no_hmma", arch, "tensor_cores")
            self.assertEqual(len(hits), 1, self.out)
            self.assertIn("no HMMA/HGMMA/IMMA/QGMMA instruction", hits[0])

    def test_narrow_loads_reported(self):
        for arch in ("sm_80", "sm_90a"):
            hits = self.find("planted_scalar", arch, "vec128_loads")
            self.assertEqual(len(hits), 1, self.out)
            self.assertIn("LDG.128 0", hits[0])

    def test_stale_declaration_reported(self):
        self.assertEqual(len([f for f in self.findings if "'re:^planted_gone$' matches no kernel" in f]), 1,
                         self.out)

    def test_true_declarations_pass(self):
        for kernel in ("planted_wmma", "planted_vec"):
            self.assertFalse([f for f in self.findings if f.startswith("sass check: %s " % kernel)], self.out)

    def test_exactly_these_findings(self):
        self.assertEqual(len(self.findings), 7, self.out)


class Report(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rc, out, err = run("--json")
        assert rc == 0, err
        cls.recs = {(r["kernel"], r["arch"]): r for r in json.loads(out)}

    def test_every_kernel_and_arch(self):
        names = {"planted_wmma", "planted_no_hmma", "planted_vec", "planted_scalar", "planted_spill"}
        self.assertEqual(set(self.recs), {(n, a) for n in names for a in ("sm_80", "sm_90a")})

    def test_tensor_cores_in_loop(self):
        for arch in ("sm_80", "sm_90a"):
            r = self.recs[("planted_wmma", arch)]
            self.assertTrue(r["has_loop"])
            self.assertGreater(r["loop_mix"]["HMMA"], 0)
            self.assertEqual(r["loop_mix"]["HMMA"], r["mix"]["HMMA"])  # all of them in the loop
            self.assertEqual(self.recs[("planted_no_hmma", arch)]["mix"]["HMMA"], 0)
            self.assertGreater(self.recs[("planted_no_hmma", arch)]["loop_mix"]["FFMA"], 0)

    def test_load_widths(self):
        for arch in ("sm_80", "sm_90a"):
            vec, scalar = self.recs[("planted_vec", arch)]["mix"], self.recs[("planted_scalar", arch)]["mix"]
            self.assertGreater(vec["LDG.128"], 0)
            self.assertEqual(vec["LDG.32"] + vec["LDG.64"], 0)
            self.assertGreater(scalar["LDG.32"], 0)
            self.assertEqual(scalar["LDG.128"], 0)

    def test_resources_and_occupancy(self):
        r = self.recs[("planted_spill", "sm_80")]
        self.assertEqual((r["regs"], r["stack"], r["block"]), (32, 160, 1024))
        self.assertGreater(r["mix"]["STL"], 0)
        # 32 registers x 1024 threads: 2 blocks fill an A100 SM's 64 warps
        self.assertEqual(r["occupancy"]["blocks_per_sm"], 2)
        self.assertEqual(r["occupancy"]["occupancy"], 1.0)
        self.assertIsNone(self.recs[("planted_scalar", "sm_80")]["occupancy"])  # no block declared


if __name__ == "__main__":
    unittest.main()
