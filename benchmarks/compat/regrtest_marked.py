"""``python3 -m test``, with a mark at the start of every test.

Run as ``python3 regrtest_marked.py MARK -v MODULE``: before each test starts,
it asks for the status of ``MARK + the test's id``, a path that does not
exist.  Inside a picoprocess the monitor serves that call and audits it, in
the same order and on the same clock as the test's own calls, so the audit
says exactly which test made which call.  Natively it is one failed stat.
Otherwise it is ``python3 -m test``: the same argv[1:], sys.path[0] the
working directory, the test package run as __main__.

Standard library only: it runs under the Python being tested, on both sides.
"""

import os
import runpy
import sys
import unittest.result


def main() -> None:
    mark = sys.argv.pop(1)
    start_test = unittest.result.TestResult.startTest

    def marked_start_test(self, test):
        try:
            os.stat(mark + test.id()[:200])
        except OSError:
            pass
        start_test(self, test)

    unittest.result.TestResult.startTest = marked_start_test
    sys.path[0] = os.getcwd()
    runpy.run_module("test", run_name="__main__", alter_sys=True)


# Imported (a walk over the package's modules), it does nothing.
if __name__ == "__main__":
    main()
