"""Unit tests of the zdtm driver's own logic, on real processes and files (no CRIU needed):
`python3 -m unittest scripts/zdtm_suite/tests.py` from the repo root."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

from zdtm_suite import catalog, categories, procs, report


class CategoryTest(unittest.TestCase):
    def test_narrow_kinds_win_over_broad_ones(self):
        self.assertEqual(categories.category("file_locks03"), "file locks")
        self.assertEqual(categories.category("file_shared"), "files")
        self.assertEqual(categories.category("unlink_fstat01+"), "deleted files")
        self.assertEqual(categories.category("socket-tcp6-closing"), "inet sockets")
        self.assertEqual(categories.category("socket_close_data"), "unix sockets")
        self.assertEqual(categories.category("pidfd_kill"), "event fds")
        self.assertEqual(categories.category("pid00"), "process tree")
        self.assertEqual(categories.category("mntns_open"), "mounts, namespaces, cgroups")

    def test_unknown_name_is_other(self):
        self.assertEqual(categories.category("no-such-kind"), categories.OTHER)
        self.assertEqual(categories.order()[-1], categories.OTHER)


class FakeCheckout:
    """A directory laid out like a CRIU checkout, with two executable "tests"."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="zdtm-unit-")
        self.static = os.path.join(self.root, "test", "zdtm", "static")
        os.makedirs(self.static)
        with open(os.path.join(self.root, "test", "zdtm.desc"), "w") as f:
            f.write("{'dir': 'zdtm/', 'exclude': ['static/gone']}\n")
        for name in ("alpha", "beta", "gone"):
            path = os.path.join(self.static, name)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(path, 0o755)
        with open(os.path.join(self.static, "Makefile"), "w") as f:
            f.write("alpha.pid: alpha\n\t$(<D)/$(<F) --pidfile=$@ --outfile=$<.out\n"
                    "beta.pid: beta\n\t$(<D)/$(<F) --pidfile=$@ --filename=$<.test\n")

    def desc(self, name: str, text: str) -> None:
        with open(os.path.join(self.static, name + ".desc"), "w") as f:
            f.write(text)

    def remove(self):
        shutil.rmtree(self.root)


class CatalogTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeCheckout()
        self.co = catalog.Checkout(self.fake.root, criu_bin="/bin/false")

    def tearDown(self):
        self.fake.remove()

    def test_names_follow_the_exclusions_of_zdtm_desc(self):
        self.assertEqual(self.co.test_names(), ["alpha", "beta"])

    def test_desc_literal_expression_and_absent(self):
        self.fake.desc("alpha", "{'flags': 'suid crfail', 'opts': '--file-locks'}")
        self.fake.desc("beta", "os.getenv('NO_SUCH_VARIABLE_HERE') or {'flags': 'noauto'}")
        self.assertTrue(self.co.desc("alpha")["flags"].startswith("suid"))
        self.assertEqual(self.co.desc("beta"), {"flags": "noauto"})
        self.assertEqual(self.co.desc("gone"), {})

    def test_start_commands_come_from_the_makefile(self):
        cmds = self.co.start_commands(["alpha", "beta"])
        self.assertEqual(cmds["alpha"], [os.path.join(self.fake.static, "alpha"),
                                         "--pidfile=alpha.pid", "--outfile=alpha.out"])
        self.assertEqual(cmds["beta"][1:], ["--pidfile=beta.pid", "--filename=beta.test"])

    def test_selection_skips_noauto_other_flavours_and_arch(self):
        self.fake.desc("alpha", "{'flavor': 'ns uns'}")
        self.fake.desc("beta", "{'flags': 'noauto'}")
        tests, skipped = catalog.select(self.co)
        self.assertEqual(tests, [])
        self.assertEqual([n for n, _ in skipped], ["alpha", "beta"])
        self.assertEqual(catalog.skip_reason(self.co, "x", {"arch": "none"}), "arch none")

    def test_unknown_test_name_is_an_error(self):
        with self.assertRaises(catalog.CatalogError):
            catalog.select(self.co, {"alpha", "nope"})


class ProcsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        procs.become_subreaper()

    def test_run_reports_exit_code_and_output(self):
        with tempfile.TemporaryDirectory() as d:
            cmd = procs.run(procs.Reaper(), ["sh", "-c", "echo hi; exit 3"], 10, d,
                            os.path.join(d, "log"))
        self.assertEqual(cmd.exit.code, 3)
        self.assertEqual(cmd.output, "hi\n")
        self.assertFalse(cmd.ok)

    def test_run_kills_at_the_deadline(self):
        with tempfile.TemporaryDirectory() as d:
            cmd = procs.run(procs.Reaper(), ["sleep", "30"], 0.2, d, os.path.join(d, "log"))
        self.assertIsNone(cmd.exit)

    def test_kill_all_reaches_daemonized_grandchildren(self):
        reaper = procs.Reaper()
        # The shell exits at once; its background sleep is orphaned and comes to us.
        subprocess.run(["sh", "-c", "setsid sleep 30 >/dev/null 2>&1 &"], check=True)
        deadline = time.monotonic() + 5
        while not [p for p in procs.descendants(os.getpid()) if procs.alive(p)]:
            self.assertLess(time.monotonic(), deadline, "orphan never reparented to us")
            time.sleep(0.01)
        killed = procs.kill_all(reaper)
        self.assertTrue(killed)
        self.assertFalse([p for p in procs.descendants(os.getpid()) if procs.alive(p)])


class ReportTest(unittest.TestCase):
    ROWS = [
        {"name": "a", "category": "files", "flags": "", "engines": {
            "ssi": {"outcome": "pass", "step": "check", "message": "", "seconds": 1, "note": ""},
            "criu": {"outcome": "pass", "step": "check", "message": "", "seconds": 1,
                     "note": ""}}},
        {"name": "b", "category": "files", "flags": "", "engines": {
            "ssi": {"outcome": "refused", "step": "dump", "message": "pid 12: fd 4 is x",
                    "seconds": 1, "note": ""},
            "criu": {"outcome": "pass", "step": "check", "message": "", "seconds": 1,
                     "note": ""}}},
        {"name": "c", "category": "memory", "flags": "", "engines": {
            "ssi": {"outcome": "refused", "step": "dump", "message": "pid 99: fd 7 is x",
                    "seconds": 1, "note": ""},
            "criu": {"outcome": "fail", "step": "check", "message": "lost", "seconds": 1,
                     "note": ""}}},
    ]

    def test_headline_counts_against_criu_passes(self):
        self.assertIn("ssi passes 1 of the 2 tests CRIU passes (50.0 %",
                      report.headline(self.ROWS))

    def test_causes_group_messages_that_differ_in_numbers(self):
        self.assertEqual(report.causes(self.ROWS, "ssi", ("refused",)),
                         "- 2 x `pid N: fd N is x`: b, c")

    def test_table_has_a_total_row(self):
        last = report.table(self.ROWS).splitlines()[-1]
        self.assertTrue(last.startswith("| **total** | 3 | 1 |"), last)

    def test_changes_between_runs(self):
        newer = [dict(self.ROWS[0], engines=dict(self.ROWS[0]["engines"],
                                                 ssi=dict(self.ROWS[0]["engines"]["ssi"],
                                                          outcome="fail")))]
        self.assertEqual(report.changes(self.ROWS, newer), "- ssi a: pass -> fail")


if __name__ == "__main__":
    unittest.main()
