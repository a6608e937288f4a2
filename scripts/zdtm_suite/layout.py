"""The private directory one test run works in: a copy of the layout zdtm.py runs tests in.

zdtm.py runs a static test from `test/zdtm/static`, its hooks from `test/` (they name files as
`zdtm/static/...` and import pycriu from `../lib`), and puts images in
`test/dump/zdtm/static/NAME/PID/1` (a .desc option reaches `test/` from there as
`../../../../../../`). Running each test in a fresh tree of that shape keeps those relative paths
true while the two tools, and concurrent runs, never share a file:

    ROOT/lib -> CRIU/lib
    ROOT/test/zdtm/lib -> CRIU/test/zdtm/lib
    ROOT/test/zdtm/static/          the test's working directory (pid, out and data files)
    ROOT/test/dump/zdtm/static/NAME/PID/1/   images
"""

import os
import shutil
import subprocess


class RunDir:
    """The directory tree of one run of one test."""

    def __init__(self, root: str, criu_src: str, name: str):
        self.root = root
        self.criu_src = criu_src
        self.name = name
        self.test_dir = os.path.join(root, "test")
        self.cwd = os.path.join(self.test_dir, "zdtm", "static")

    def create(self) -> None:
        """A fresh tree (whatever an earlier run left is removed first)."""
        self.remove()
        os.makedirs(self.cwd)
        # Tests without the suid flag run as another user and create their files here.
        os.chmod(self.cwd, 0o777)
        os.symlink(os.path.join(self.criu_src, "lib"), os.path.join(self.root, "lib"))
        os.symlink(os.path.join(self.criu_src, "test", "zdtm", "lib"),
                   os.path.join(self.test_dir, "zdtm", "lib"))

    def link_as(self, path: str) -> None:
        """A symbolic link `path` to the tree, to find a kept run by its test's name."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(self.root, path)

    def images(self, pid: int) -> str:
        """The image directory for the test whose pid is `pid` (created, writable by all)."""
        path = os.path.join(self.test_dir, "dump", "zdtm", "static", self.name, str(pid), "1")
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)
        return path

    def log(self, what: str) -> str:
        """Path of a log file of the run."""
        return os.path.join(self.root, what + ".log")

    def remove(self) -> None:
        """Unmount what the test mounted inside the tree, then delete it."""
        unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def unmount_below(path: str) -> None:
    """Lazily unmount every mount point under `path`, deepest first (cgroup tests mount
    hierarchies in their directory and a killed test leaves them mounted)."""
    prefix = os.path.abspath(path) + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
