"""Processes the driver starts: spawning, waiting with deadlines, and killing all of them.

The driver makes itself a child subreaper. zdtm test programs daemonize (the launcher exits once
the daemon is ready) and `criu restore -d` / `ssi restore --detach` leave the restored tree
behind when they exit; as a subreaper the driver becomes the parent of all of these, so
- it reaps a killed test at once (pid 1 of this VM reaps orphans only every ~2 s, and a restore
  meets "pid in use" while the zombie holds the pid), and
- every process it ever started is one of its descendants, found by walking /proc, and killed at
  the end of each test even when a step failed or hung.

Because the driver reaps every child itself (`waitpid(-1)`), exit statuses of the commands it runs
are collected here, never through `Popen.wait`.
"""

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36
POLL = 0.01


def become_subreaper() -> None:
    """Make orphans of our descendants our children rather than pid 1's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


@dataclass
class Exit:
    """How a process ended."""

    code: int | None = None
    signal: int | None = None

    def __str__(self) -> str:
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exit code {self.code}"


def _decode(status: int) -> Exit:
    if os.WIFSIGNALED(status):
        return Exit(signal=os.WTERMSIG(status))
    return Exit(code=os.WEXITSTATUS(status))


class Reaper:
    """Reaps every child of the driver and remembers how each ended."""

    def __init__(self) -> None:
        self.ended: dict[int, Exit] = {}

    def poll(self) -> None:
        """Reap every child that has ended (never blocks)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self.ended[pid] = _decode(status)

    def wait(self, pid: int, timeout: float) -> Exit | None:
        """Wait until `pid` has ended and was reaped (or is not ours and is gone); None on
        timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if pid in self.ended:
                return self.ended.pop(pid)
            if not alive(pid):
                # It may have ended after the poll: a child of ours is reaped now.
                self.poll()
                return self.ended.pop(pid, Exit())
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)

    def forget(self, pid: int) -> Exit | None:
        """How `pid` ended if it was reaped already (the entry is dropped)."""
        self.poll()
        return self.ended.pop(pid, None)


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    state = proc_status(pid).get("State", "")
    return bool(state) and not state.startswith(("Z", "X"))


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict; empty if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def stopped_or_traced(pid: int) -> str | None:
    """A description if `pid` is left stopped or traced (a dump must not leave it so)."""
    st = proc_status(pid)
    state = st.get("State", "")
    if state.startswith(("T", "t")):
        return f"left in state {state}"
    if st.get("TracerPid", "0") != "0":
        return f"left traced by {st['TracerPid']}"
    return None


@dataclass
class Command:
    """The outcome of one command run to completion or to its deadline."""

    argv: list[str]
    exit: Exit | None  # None: killed at the deadline
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        """Exit code 0 before the deadline."""
        return self.exit is not None and self.exit.code == 0


class Running:
    """A command started by `spawn`, to be collected by `finish`."""

    def __init__(self, argv: list[str], popen: subprocess.Popen, log: str):
        self.argv, self.popen, self.log = argv, popen, log
        self.started = time.monotonic()


def spawn(reaper: Reaper, argv: list[str], cwd: str, log: str,
          env: dict[str, str] | None = None, preexec=None) -> Running:
    """Start `argv` with stdout and stderr into `log` (`preexec` runs in the child before the
    exec), in a session of its own."""
    with open(log, "wb") as out:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
                             preexec_fn=preexec)
    # An entry for this pid would be from an earlier process that had the same pid.
    reaper.ended.pop(p.pid, None)
    return Running(argv, p, log)


def finish(reaper: Reaper, running: Running, timeout: float) -> Command:
    """Wait for a spawned command; kill it and its descendants at the deadline."""
    pid = running.popen.pid
    result = reaper.wait(pid, max(0.0, running.started + timeout - time.monotonic()))
    if result is None:
        kill_tree(reaper, pid)
    # The driver reaped it; tell Popen so it never waits for it again.
    running.popen.returncode = -1
    with open(running.log, errors="replace") as f:
        output = f.read()
    return Command(running.argv, result, time.monotonic() - running.started, output)


def run(reaper: Reaper, argv: list[str], timeout: float, cwd: str, log: str,
        env: dict[str, str] | None = None, preexec=None) -> Command:
    """`spawn` then `finish`."""
    return finish(reaper, spawn(reaper, argv, cwd, log, env, preexec), timeout)


def descendants(root: int) -> list[int]:
    """Every process below `root` (children first found, breadth first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def kill_tree(reaper: Reaper, pid: int, timeout: float = 10.0) -> None:
    """SIGKILL `pid` and its descendants, then reap them."""
    victims = [pid] + descendants(pid)
    _kill_and_reap(reaper, victims, timeout)


def kill_all(reaper: Reaper, timeout: float = 10.0) -> list[int]:
    """SIGKILL every descendant of the driver and reap them; returns the pids found.

    Repeats until none is left: a process may fork between the listing and the kill."""
    found: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        victims = descendants(os.getpid())
        victims = [v for v in victims if alive(v)]
        if not victims:
            reaper.poll()
            return found
        found += victims
        _kill_and_reap(reaper, victims, max(0.1, deadline - time.monotonic()))
    return found


def _kill_and_reap(reaper: Reaper, victims: list[int], timeout: float) -> None:
    for v in victims:
        try:
            os.kill(v, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for v in victims:
        reaper.wait(v, max(0.0, deadline - time.monotonic()))
