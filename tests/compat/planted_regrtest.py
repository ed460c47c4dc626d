"""A regression-test module whose outcomes are known, natively and inside a
picoprocess, for tests/test_compat_bench.py: the harness must report each
of them as planted here.

What tells the two apart is a permanent property of a picoprocess: it has
its own pid namespace, where the program's parent is its reaper, pid 1;
natively the parent is whoever started it.
"""

import os
import sys
import threading
import time
import unittest


def inside() -> bool:
    return os.getppid() == 1


class Planted(unittest.TestCase):
    def test_a_passes(self):
        self.assertEqual(sum(range(10)), 45)

    def test_b_skips(self):
        self.skipTest("planted skip")

    def test_c_fails_everywhere(self):
        self.assertEqual(1, 2, "planted failure")

    def test_d_differs_inside(self):
        # A file the manifest refuses, asked for over half a second, so that
        # the audit shows it while this test runs (and not only right after
        # the previous test's last line).
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                open("/etc/shadow").close()
            except OSError:
                pass
            time.sleep(0.01)
        self.assertFalse(inside(), "planted difference")

    def test_e_hangs_inside(self):
        if inside():
            threading.Event().wait()

    def test_f_crashes_inside(self):
        if inside():
            os.abort()

    def test_g_prints_without_newline_then_passes(self):
        sys.stdout.write("output of the test itself")
        sys.stdout.flush()

    def test_h_hangs_natively(self):
        if not inside():
            threading.Event().wait()

    @unittest.expectedFailure
    def test_i_expected_failure(self):
        self.assertTrue(False)

    def test_j_subtest_fails(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 2)

    def test_k_after_the_hangs_and_crash(self):
        self.assertTrue(True)

    def test_l_with_docstring(self):
        """A docstring that verbose mode prints."""


class SkippedClass(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise unittest.SkipTest("planted class skip")

    def test_never_runs(self):
        pass


if __name__ == "__main__":
    unittest.main()
