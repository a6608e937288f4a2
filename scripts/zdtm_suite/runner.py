"""One zdtm test through one engine: start, dump, restore, check; and what the outcome was.

The steps are those of CRIU's `test/zdtm.py` for a static test in the host flavour: start the
program with its Makefile command line (it daemonizes, writes its pid file and waits), dump (the
tree is killed), wait until it is gone, restore detached, send SIGTERM, and read the last word of
its `.out` file: PASS or not. Each test runs in a directory of its own (its pid, out and data files
are relative to it, see layout.py), so the two engines and concurrent runs never see each other's
files.
"""

import os
import signal
import time
from dataclasses import dataclass, asdict

from . import procs
from .catalog import TEST_GID, TEST_GROUPS, TEST_UID, Checkout, Test
from .layout import RunDir

# Outcomes (the table orders them in report.COLUMNS).
PASS = "pass"
FAIL = "fail"                   # accepted dump+restore, then the program found its state wrong
REFUSED = "refused"             # dump said no, the program ran on and passed its check
DUMP_ERROR = "dump error"       # dump failed and harmed the program (died, stopped, failed check)
RESTORE_ERROR = "restore error"
TIMEOUT = "timeout"
START_ERROR = "start error"     # the test itself did not start: not counted for either tool

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Result:
    """Outcome of one test through one engine."""

    outcome: str
    step: str        # start, dump, restore or check
    message: str     # refusal or error line, or the test's own FAIL lines
    seconds: float
    note: str = ""

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


class StepFailed(Exception):
    """A step ended the run of the test with `result`."""

    def __init__(self, result: Result):
        super().__init__(result.message)
        self.result = result


@dataclass
class Context:
    """What every test run shares."""

    checkout: Checkout
    reaper: procs.Reaper
    workdir: str
    keep: bool = False


def test_env(test: Test) -> dict[str, str]:
    """The environment zdtm.py gives a static test in the host flavour."""
    env = dict(os.environ, TMPDIR=os.environ.get("TMPDIR", "/tmp"), ZDTM_THREAD_BOMB="5")
    if not test.as_root:
        env.update(ZDTM_UID=str(TEST_UID), ZDTM_GID=str(TEST_GID),
                   ZDTM_GROUPS=" ".join(map(str, TEST_GROUPS)))
    return env


class Run:
    """The run of `test` through `engine` in a directory tree of its own."""

    def __init__(self, ctx: Context, test: Test, engine, index: int):
        self.ctx, self.test, self.engine = ctx, test, engine
        # A short root: tests bind Unix sockets at paths below their working directory, and a
        # sun_path holds 107 bytes (zdtm's own is CRIU/test/zdtm/static).
        self.dir = RunDir(os.path.join(ctx.workdir, f"{engine.name}.{index}"),
                          ctx.checkout.root, test.name)
        self.img = ""
        self.started = time.monotonic()
        self.pid = 0

    def result(self, outcome: str, step: str, message: str, note: str = "") -> Result:
        """A result stamped with the time spent so far."""
        return Result(outcome, step, message, round(time.monotonic() - self.started, 2), note)

    def fail(self, outcome: str, step: str, message: str, note: str = "") -> StepFailed:
        """The exception that ends the run with this result."""
        return StepFailed(self.result(outcome, step, message, note))

    def execute(self) -> Result:
        """Run every step; always kill what was started and clean up."""
        self.dir.create()
        if self.ctx.keep:
            self.dir.link_as(os.path.join(self.ctx.workdir, self.engine.name, self.test.name))
        self.ctx.reaper.ended.clear()  # pids of earlier tests may be reused
        try:
            return self._steps()
        except StepFailed as e:
            return e.result
        finally:
            # As zdtm.py: the test is killed, then its hook cleans up (cgroups it made).
            procs.kill_all(self.ctx.reaper)
            self.hook("--clean")
            procs.kill_all(self.ctx.reaper)
            if not self.ctx.keep:
                self.dir.remove()

    def _steps(self) -> Result:
        self.start()
        self.img = self.dir.images(self.pid)
        self.hook("--pre-dump", fails_as=START_ERROR)
        # Both tools run from test/, as zdtm.py runs CRIU.
        dump = self.engine.dump(self.ctx.reaper, self.test, self.pid, self.img,
                                self.dir.test_dir, self.dir.log(f"{self.engine.name}-dump"))
        if not dump.ok:
            return self.after_refusal(dump)
        self.wait_gone()
        self.hook("--pre-restore", fails_as=FAIL)
        restore = self.engine.restore(self.ctx.reaper, self.test, self.img,
                                      self.dir.test_dir,
                                      self.dir.log(f"{self.engine.name}-restore"))
        if not restore.ok:
            outcome = TIMEOUT if restore.exit is None else RESTORE_ERROR
            return self.result(outcome, "restore", self.engine.why(restore, self.img, "restore"))
        self.hook("--post-restore", fails_as=FAIL)
        passed, message = self.check("restore")
        if passed:
            note = ("accepted although the test expects CRIU to refuse it"
                    if self.test.flag("crfail") else "")
            return self.result(PASS, "check", "", note)
        return self.result(FAIL, "check", message)

    def start(self) -> None:
        """Start the test with its Makefile command line; wait for its pid file.

        As in zdtm.py, the --post-start hook runs while the test starts: some tests wait for
        what their hook does (a peer connecting) before they say they are ready."""
        launch = procs.spawn(self.ctx.reaper, self.test.argv, self.dir.cwd,
                             self.dir.log("start"), env=test_env(self.test))
        self.hook("--post-start", fails_as=START_ERROR)
        done = procs.finish(self.ctx.reaper, launch, self.test.timeout)
        if done.exit is None:
            raise self.fail(START_ERROR, "start", f"not ready within {self.test.timeout} s")
        if not done.ok:
            raise self.fail(START_ERROR, "start",
                            f"{done.exit}: {self.out_text() or done.output.strip()}"[:500])
        try:
            with open(os.path.join(self.dir.cwd, self.test.name + ".pid")) as f:
                self.pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError) as e:
            raise self.fail(START_ERROR, "start", f"no pid file: {e}") from e

    def wait_gone(self) -> None:
        """After an accepted dump the tree must be gone before its pids are restored."""
        if self.ctx.reaper.wait(self.pid, self.test.timeout) is None:
            raise self.fail(DUMP_ERROR, "dump",
                            f"dump succeeded but pid {self.pid} still runs "
                            f"{self.test.timeout} s later")

    def after_refusal(self, dump: procs.Command) -> Result:
        """A failed dump: a clean refusal leaves the program running, unharmed."""
        why = self.engine.why(dump, self.img, "dump")
        if dump.exit is None:
            return self.result(TIMEOUT, "dump", why)
        harm = self.harm_after_refusal()
        if harm:
            return self.result(DUMP_ERROR, "dump", why, harm)
        # Some tests talk to a peer their hook runs and wait for what it sends at each stage.
        self.hook("--pre-restore")
        self.hook("--post-restore")
        passed, message = self.check("refused dump")
        if not passed and self.test.flag("reqrst"):
            # The test checks what a restore does (e.g. CRIU's --tcp-close): without one it
            # cannot pass, so its failure says nothing against the refusal.
            return self.result(REFUSED, "dump", why,
                               f"then failed its check, as it must without a restore: {message}")
        if not passed:
            return self.result(DUMP_ERROR, "dump", why,
                               f"the program then failed its check: {message}")
        if self.test.flag("crfail"):
            return self.result(PASS, "dump", why, "refused, as the test expects")
        return self.result(REFUSED, "dump", why)

    def harm_after_refusal(self) -> str:
        """What is wrong with the program after a failed dump, or ''."""
        # A tracer that just exited may take a moment to let go of its tracees.
        deadline = time.monotonic() + 2.0
        while True:
            if not procs.alive(self.pid):
                ended = self.ctx.reaper.forget(self.pid)
                return f"the program died ({ended or 'not reaped here'})"
            state = procs.stopped_or_traced(self.pid)
            if not state or time.monotonic() >= deadline:
                return f"the program was {state}" if state else ""
            time.sleep(procs.POLL)

    def check(self, after: str) -> tuple[bool, str]:
        """SIGTERM the program and read its verdict: (passed, why not)."""
        try:
            if not procs.alive(self.pid):
                raise ProcessLookupError
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            ended = self.ctx.reaper.forget(self.pid)
            return False, (f"died before SIGTERM after the {after} "
                           f"({ended or 'not reaped here'}): {self.out_text()}")
        ended = self.ctx.reaper.wait(self.pid, self.test.timeout)
        if ended is None:
            state = procs.proc_status(self.pid).get("State", "?")
            message = f"still running {self.test.timeout} s after SIGTERM (state {state})"
            if after == "restore":
                raise self.fail(TIMEOUT, "check", message)
            return False, message
        lines = self.out_lines()
        # zdtm.py's verdict: the word PASS on the last line of the .out file.
        if lines and "PASS" in lines[-1].split():
            return True, ""
        return False, self.out_text() or f"no output ({ended})"

    def out_lines(self) -> list[str]:
        """Non-empty lines of the test's `.out` (or `.out.inprogress` if it never finished)."""
        for suffix in (".out", ".out.inprogress"):
            try:
                path = os.path.join(self.dir.cwd, self.test.name + suffix)
                with open(path, errors="replace") as f:
                    return [line.strip() for line in f if line.strip()]
            except OSError:
                continue
        return []

    def out_text(self) -> str:
        """The test's output in one line: its FAIL/ERR lines if any, else its last lines."""
        lines = self.out_lines()
        bad = [line for line in lines if "FAIL" in line or "ERR" in line or "rror" in line]
        return " | ".join(bad or lines[-3:])[:1000]

    def hook(self, stage: str, fails_as: str | None = None) -> None:
        """Run the test's `.hook` for `stage` as zdtm.py does (from test/, with the pid and the
        image directory in the environment). A failure ends the run with outcome `fails_as`;
        without it (cleaning up, or after a refused dump) it is ignored."""
        path = self.ctx.checkout.hook(self.test.name)
        if not path:
            return
        if stage == "--post-restore" and not self.engine.writes_criu_images \
                and reads_criu_images(path):
            return
        # The system PATH (as zdtm gives tests in a namespace): hooks run `python3` and need the
        # distribution's, which has the protobuf module pycriu imports.
        env = dict(test_env(self.test), ZDTM_TEST_PID=str(self.pid), ZDTM_IMG_DIR=self.img,
                   PATH=SYSTEM_PATH)
        cmd = procs.run(self.ctx.reaper, [path, stage], self.test.timeout, self.dir.test_dir,
                        self.dir.log(f"hook{stage}"), env=env)
        if fails_as and not cmd.ok:
            tail = " | ".join(cmd.output.strip().splitlines()[-3:])
            step = "start" if fails_as == START_ERROR else "check"
            raise self.fail(fails_as, step, f"{stage} hook failed ({cmd.exit}): {tail}")


def reads_criu_images(hook: str) -> bool:
    """Whether a hook inspects CRIU's image files (with pycriu): meaningless for ssi's images.
    Other hooks (a peer sending data around the restore) run for both tools."""
    with open(hook, errors="replace") as f:
        return "pycriu" in f.read()
