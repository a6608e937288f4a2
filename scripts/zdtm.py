#!/usr/bin/env python3
"""Run CRIU's zdtm static tests through `ssi dump`/`ssi restore` and through CRIU, side by side.

Each test program sets up some kernel state, is dumped (and killed), restored, then told to check
that its state survived. Outcomes per tool: pass; fail after an accepted dump+restore (silently
wrong); refused at dump; dump error; restore error; timeout. Prints a table by kind of state and
saves a per-test listing (JSON and CSV). See docs/CHECKPOINT.md.

Needs root, a CRIU checkout (CRIU_SRC, default /work/criu-4.2; --fetch clones and builds v4.2
there if absent) and the repo's binaries (`cargo build --workspace --bins`).

  scripts/zdtm.py --quick                  # a chosen subset, under 2 minutes
  scripts/zdtm.py --full                   # every test runnable in the host flavour
  scripts/zdtm.py --tests file_locks00,pipe00 --engines ssi --keep
  scripts/zdtm.py --list                   # what would run, and why the others are skipped
  scripts/zdtm.py --report RESULTS.json [--compare OLDER.json]
"""

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
from zdtm_suite import catalog, engines, layout, procs, report, runner, setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The quick subset: one or two tests of each kind of state, each a few seconds at most,
# including kinds ssi passes, refuses and loses.
QUICK = ["pipe00", "fifo", "file_locks01", "file_lease00", "unlink_fstat00", "write_read00",
         "file_shared", "file_fown", "cwd01", "maps00", "maps02", "cow00", "mprotect00",
         "thp_disable", "memfd00", "unlink_mmap00", "sockets00", "sockets_spair",
         "sk-unix-unconn", "sk-unix-listen01", "socket-tcp", "socket_udp", "pthread00", "fpu00",
         "sigaltstack", "sigtrap01", "posix_timers", "zombie00", "zombie01", "stopped",
         "stopped01", "fdt_shared", "pdeath_sig", "oom_score_adj", "sched_prio00",
         "seccomp_strict", "epoll", "inotify00", "pidfd_self", "pty00", "futex"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the quick subset (default)")
    mode.add_argument("--full", action="store_true", help="every runnable static test")
    mode.add_argument("--tests", help="comma-separated test names")
    p.add_argument("--engines", default="ssi,criu", help="ssi, criu or both (default)")
    p.add_argument("--criu-src", default=os.environ.get("CRIU_SRC", "/work/criu-4.2"),
                   help="CRIU checkout (env CRIU_SRC; default /work/criu-4.2)")
    p.add_argument("--criu-bin", help="criu binary (default CRIU_SRC/criu/criu)")
    p.add_argument("--fetch", action="store_true",
                   help="clone CRIU v4.2 into --criu-src and build it if absent")
    p.add_argument("--criu-git", default=setup.CRIU_GIT, help="where --fetch clones from")
    p.add_argument("--ssi", default=os.path.join(REPO, "target", "debug", "ssi"),
                   help="ssi binary (default target/debug/ssi of this repo)")
    p.add_argument("--workdir", help="where tests run (default a fresh /var/tmp/zdtm.PID; "
                                     "keep it short: tests bind Unix sockets below it)")
    p.add_argument("--out", help="results prefix: writes PREFIX.json and PREFIX.csv "
                                 "(default target/zdtm/zdtm-MODE-DATE)")
    p.add_argument("--keep", action="store_true",
                   help="keep each test's directory and images (WORKDIR/ENGINE/TEST)")
    p.add_argument("--list", action="store_true", help="list the selection and exit")
    p.add_argument("--report", metavar="JSON", help="print the tables of a saved run and exit")
    p.add_argument("--compare", metavar="JSON", help="also list outcome changes against this run")
    return p.parse_args(argv)


def make_engines(args: argparse.Namespace, criu_bin: str, workdir: str) -> list:
    """The engines asked for, with their binaries checked."""
    chosen = []
    for name in args.engines.split(","):
        if name == "ssi":
            if not os.access(args.ssi, os.X_OK):
                sys.exit(f"zdtm: {args.ssi}: no ssi binary (run `cargo build --workspace --bins`)")
            chosen.append(engines.Ssi(args.ssi))
        elif name == "criu":
            chosen.append(engines.Criu(criu_bin, workdir))
        else:
            sys.exit(f"zdtm: --engines: unknown engine {name!r} (ssi, criu)")
    return chosen


def wanted(args: argparse.Namespace) -> set[str] | None:
    """The test names the mode restricts to (None: all)."""
    if args.full:
        return None
    if args.tests:
        return {t.strip() for t in args.tests.split(",") if t.strip()}
    return set(QUICK)


def describe(args: argparse.Namespace, mode: str, criu_bin: str) -> dict:
    """What the results were measured with."""
    def out(cmd: list[str]) -> str:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return r.stdout.strip() or r.stderr.strip()
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["scripts/zdtm.py"] + sys.argv[1:]),
        "mode": mode,
        "kernel": platform.release(),
        "ssi_commit": out(["git", "-C", REPO, "describe", "--always", "--dirty"]),
        "criu": out([criu_bin, "--version"]).splitlines()[0],
        "criu_src": os.path.abspath(args.criu_src),
    }


def print_tables(meta: dict, rows: list[dict], older: list[dict] | None) -> None:
    """The summary a run ends with."""
    print(f"\nzdtm static tests, host flavour, {meta['date']}, kernel {meta['kernel']}, "
          f"ssi {meta['ssi_commit']}, {meta['criu']}\n")
    print(report.table(rows))
    line = report.headline(rows)
    if line:
        print("\n" + line)
    if any("ssi" in r["engines"] for r in rows):
        silent = report.listing(rows, "ssi", (runner.FAIL,))
        if silent:
            print("\nssi: fail after an accepted dump+restore:\n" + silent)
        refusals = report.causes(rows, "ssi", (runner.REFUSED, runner.DUMP_ERROR))
        if refusals:
            print("\nssi: dump refusals and errors, grouped by message:\n" + refusals)
        errors = report.listing(rows, "ssi", (runner.RESTORE_ERROR, runner.TIMEOUT))
        if errors:
            print("\nssi: restore errors and timeouts:\n" + errors)
    if older is not None:
        print("\nchanges against the earlier run:\n" + report.changes(older, rows))


def run_all(ctx: runner.Context, tests: list[catalog.Test], chosen: list,
            rows: list[dict]) -> None:
    """Run every test through every engine, appending one row per finished test to `rows`
    (so that what finished is kept if the run is interrupted)."""
    width = max((len(t.name) for t in tests), default=0)
    for i, test in enumerate(tests, 1):
        row = {"name": test.name, "category": test.category,
               "flags": test.desc.get("flags", ""), "engines": {}}
        parts = []
        for engine in chosen:
            r = runner.Run(ctx, test, engine, i).execute()
            row["engines"][engine.name] = r.to_dict()
            parts.append(f"{engine.name}: {r.outcome} ({r.seconds:.1f} s)")
        rows.append(row)
        print(f"[{i}/{len(tests)}] {test.name:<{width}}  " + "  ".join(parts), flush=True)


@contextlib.contextmanager
def working_dir(args: argparse.Namespace):
    """The directory the tests run in; one made here is removed at the end unless --keep."""
    path = args.workdir or f"/var/tmp/zdtm.{os.getpid()}"
    os.makedirs(path, exist_ok=True)
    try:
        yield path
    finally:
        if not args.keep and not args.workdir:
            layout.unmount_below(path)
            shutil.rmtree(path, ignore_errors=True)


def list_selection(tests: list[catalog.Test], skipped: list[tuple[str, str]]) -> None:
    """--list: the runnable tests with their kind and flags, then the skipped ones and why."""
    for t in tests:
        print(f"{t.name:<36} {t.category:<28} {t.desc.get('flags', '')}")
    for name, reason in skipped:
        print(f"{name:<36} skipped: {reason}")
    print(f"{len(tests)} runnable, {len(skipped)} skipped")


def run_suite(args: argparse.Namespace, checkout: catalog.Checkout,
              tests: list[catalog.Test], skipped: list, workdir: str) -> int:
    """Run the selection, save and print the results."""
    mode = "full" if args.full else "tests" if args.tests else "quick"
    chosen = make_engines(args, checkout.criu_bin, workdir)
    meta = describe(args, mode, checkout.criu_bin)
    procs.become_subreaper()
    # SIGTERM ends the run like Ctrl-C: the current test's processes are killed, results kept.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    ctx = runner.Context(checkout, procs.Reaper(), workdir, args.keep)
    started = time.monotonic()
    print(f"zdtm: {len(tests)} tests ({len(skipped)} skipped here), engines "
          f"{', '.join(e.name for e in chosen)}, working in {workdir}", flush=True)
    prefix = args.out or os.path.join(
        REPO, "target", "zdtm", f"zdtm-{mode}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    rows: list[dict] = []
    try:
        with setup.zdtm_cgroups(checkout.test_dir):
            run_all(ctx, tests, chosen, rows)
    except KeyboardInterrupt:
        print("zdtm: interrupted; keeping the tests finished so far", file=sys.stderr)
    finally:
        meta["seconds"] = round(time.monotonic() - started)
        report.save(prefix + ".json", prefix + ".csv", meta, rows)
    print_tables(meta, rows, None if not args.compare else report.load(args.compare)[1])
    print(f"\n{len(rows)} tests in {meta['seconds']} s; per-test results in {prefix}.json "
          f"and {prefix}.csv")
    return 0 if len(rows) == len(tests) else 130


def main(argv: list[str]) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.report:
        meta, rows = report.load(args.report)
        print_tables(meta, rows, report.load(args.compare)[1] if args.compare else None)
        return 0
    if os.geteuid() != 0:
        sys.exit("zdtm: must run as root (zdtm tests switch users; dumps need ptrace of them)")
    criu_bin = args.criu_bin or os.path.join(args.criu_src, "criu", "criu")
    build_log = os.path.join(REPO, "target", "zdtm", "criu-build.log")
    os.makedirs(os.path.dirname(build_log), exist_ok=True)
    try:
        setup.prepare(args.criu_src, criu_bin, args.fetch, args.criu_git, build_log)
        checkout = catalog.Checkout(args.criu_src, criu_bin)
        tests, skipped = catalog.select(checkout, wanted(args))
    except catalog.CatalogError as e:
        sys.exit(f"zdtm: {e}")
    if args.list:
        list_selection(tests, skipped)
        return 0
    with working_dir(args) as workdir:
        return run_suite(args, checkout, tests, skipped, workdir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
