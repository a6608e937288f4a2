"""The two checkpoint/restore tools under comparison: the repo's `ssi` and CRIU.

Each runs `dump` (the tree is killed afterwards, as zdtm does) and a detached `restore` of one
test's tree, and says in one line why a step failed.
"""

import os
import re
import sys

from .catalog import TEST_GID, TEST_UID, Test
from .procs import Command, Reaper, run

COMMAND_TIMEOUT = 60.0

# Errors CRIU logs and goes on after: not the cause of a failure.
BENIGN_CRIU_ERRORS = [
    # Raising its own fd limit needs CAP_SYS_RESOURCE, which root lacks on this machine.
    "Can't setup RLIMIT_NOFILE for self",
]


class Ssi:
    """`ssi dump --pid PID --dir D` / `ssi restore --dir D --detach`."""

    name = "ssi"
    writes_criu_images = False

    def __init__(self, binary: str):
        self.binary = binary

    def dump(self, reaper: Reaper, test: Test, pid: int, img: str, cwd: str,
             log: str) -> Command:
        """Dump the tree rooted at `pid` into `img`."""
        del test  # ssi has no per-test options
        return run(reaper, [self.binary, "dump", "--pid", str(pid), "--dir", img],
                   COMMAND_TIMEOUT, cwd, log)

    def restore(self, reaper: Reaper, test: Test, img: str, cwd: str, log: str) -> Command:
        """Restore the tree of `img`, detached (with `--tcp-close` where the test asks CRIU
        for it)."""
        argv = [self.binary, "restore", "--dir", img, "--detach"]
        if "--tcp-close" in test.criu_opts("restore"):
            argv.append("--tcp-close")
        return run(reaper, argv, COMMAND_TIMEOUT, cwd, log)

    @staticmethod
    def why(cmd: Command, img: str, action: str) -> str:
        """The error line `ssi` printed (`ssi: error: ...`, causes joined by ': '), or where
        it panicked and why."""
        del img, action
        lines = cmd.output.splitlines()
        for i, line in enumerate(lines):
            if "panicked at " in line:
                where = line.split("panicked at ", 1)[1].strip().rstrip(":")
                what = lines[i + 1].strip() if i + 1 < len(lines) else ""
                return f"panic at {where}: {what}"
        return error_line(cmd, r"^ssi: error: (.*)$")



class Criu:
    """`criu dump -t PID -D D --shell-job` / `criu restore -D D --shell-job -d`, plus the options
    of the test's .desc (`--file-locks`, `--tcp-established`, `--link-remap`, ...)."""

    name = "criu"
    writes_criu_images = True

    def __init__(self, binary: str, workdir: str):
        self.binary = binary
        self.helpers = os.path.join(workdir, "criu-helpers")
        os.makedirs(self.helpers, exist_ok=True)
        sh = os.path.join(self.helpers, "sh")
        with open(sh, "w") as f:
            f.write(ROOT_SH.format(python=sys.executable))
        os.chmod(sh, 0o755)

    def _args(self, action: str, img: str) -> list[str]:
        # --no-default-config: a /etc/criu/default.conf must not change what is measured.
        return [self.binary, action, "--no-default-config", "-D", img, "-o", f"{action}.log",
                "-v4", "--shell-job"]

    def dump(self, reaper: Reaper, test: Test, pid: int, img: str, cwd: str,
             log: str) -> Command:
        """Dump the tree rooted at `pid` into `img` (zdtm's `--timeout 10` for freezing)."""
        argv = self._args("dump", img) + ["-t", str(pid), "--timeout", "10"]
        if test.as_root:
            env, preexec = None, None
        else:
            path = self.helpers + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            env, preexec = dict(os.environ, PATH=path), _real_ids_of_test_user
        return run(reaper, argv + test.criu_opts("dump"), COMMAND_TIMEOUT, cwd, log, env=env,
                   preexec=preexec)

    def restore(self, reaper: Reaper, test: Test, img: str, cwd: str, log: str) -> Command:
        """Restore the tree of `img`, detached (`-d`)."""
        argv = self._args("restore", img) + ["-d"]
        return run(reaper, argv + test.criu_opts("restore"), COMMAND_TIMEOUT, cwd, log)

    @staticmethod
    def why(cmd: Command, img: str, action: str) -> str:
        """The first `Error (file.c:N): ...` line of CRIU's log: later ones are consequences."""
        try:
            with open(os.path.join(img, f"{action}.log"), errors="replace") as f:
                log = f.read()
        except OSError:
            log = ""
        for line in log.splitlines():
            m = re.search(r"Error \(([^)]*)\): (.*)$", line)
            if m and not any(b in m.group(2) for b in BENIGN_CRIU_ERRORS):
                return f"{m.group(2).strip()} ({m.group(1)})"
        return error_line(cmd, r"^(.*[Ee]rror.*)$")



# criu runs its helpers (iptables for the TCP network lock) with `sh -c`; under
# _real_ids_of_test_user that sh would drop root, so the PATH of such a dump starts with a
# directory holding this `sh`, which gives the real ids back to root first.
ROOT_SH = """#!{python}
import os, sys
os.setresgid(0, 0, 0)
os.setresuid(0, 0, 0)
os.execv("/bin/sh", ["sh"] + sys.argv[1:])
"""


def _real_ids_of_test_user() -> None:
    """Give criu the real uid and gid of a non-suid test's user, keeping effective root.

    CRIU reads each task's rlimits with prlimit64(pid), which the kernel allows only to a
    caller whose real ids match the target's or that has CAP_SYS_RESOURCE; root on this
    machine lacks that capability, so every dump of a test running as TEST_UID would fail
    ("Can't get rlimit 0"). With euid and saved uid 0 the capabilities are all kept; only
    `sh`, which drops privileges when its real and effective ids differ, needs ROOT_SH."""
    os.setresgid(TEST_GID, 0, 0)
    os.setresuid(TEST_UID, 0, 0)


def error_line(cmd: Command, pattern: str) -> str:
    """The first output line matching `pattern` (its first group), else the last line, else
    how the command ended."""
    if cmd.exit is None:
        return f"no answer within {COMMAND_TIMEOUT:.0f} s"
    lines = [line.strip() for line in cmd.output.splitlines() if line.strip()]
    for line in lines:
        m = re.match(pattern, line)
        if m:
            return m.group(1)
    if lines:
        return lines[-1]
    return str(cmd.exit)
