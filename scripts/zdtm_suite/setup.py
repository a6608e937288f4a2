"""Getting a CRIU v4.2 checkout with its binary and zdtm static tests built, outside the repo.

Without `--fetch` the checkout must exist. With it, a missing checkout is cloned (tag v4.2, from
`--criu-git`, by default CRIU's GitHub repository), the Debian packages CRIU needs are installed
with apt-get if missing, and `make criu` runs. pycriu (`make lib`), which some tests' hooks use
to read CRIU's images, is built when absent. The static tests are (re)built on every run: a
no-op when nothing changed. A lock file serializes builds of one checkout by concurrent runs.
"""

import contextlib
import fcntl
import os
import subprocess
import uuid

from .catalog import CatalogError

CRIU_TAG = "v4.2"
CRIU_GIT = "https://github.com/checkpoint-restore/criu.git"
# What CRIU 4.2 needs to build on Debian 12 (see its INSTALL.md and Makefile.config).
DEB_PACKAGES = ["build-essential", "git", "pkg-config", "libprotobuf-c-dev",
                "protobuf-c-compiler", "libprotobuf-dev", "protobuf-compiler", "libnl-3-dev",
                "libnl-route-3-dev", "libnet1-dev", "libcap-dev", "libbsd-dev",
                "python3-protobuf", "libaio-dev",
                # CRIU's network lock for established TCP connections runs iptables.
                "iptables"]


def _run(argv: list[str], log, cwd: str | None = None) -> None:
    r = subprocess.run(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if r.returncode != 0:
        raise CatalogError(f"`{' '.join(argv)}` failed (exit {r.returncode}); see {log.name}")


def fetch(src: str, git_url: str, log) -> None:
    """Clone CRIU's v4.2 tag into `src`."""
    os.makedirs(os.path.dirname(os.path.abspath(src)), exist_ok=True)
    _run(["git", "clone", "--depth", "1", "--branch", CRIU_TAG, git_url, src], log)


def install_packages(log) -> None:
    """apt-get install the build dependencies that dpkg does not list as installed."""
    missing = [p for p in DEB_PACKAGES
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                 text=True, check=False).stdout != "install ok installed"]
    if missing:
        _run(["apt-get", "install", "-y", "--no-install-recommends"] + missing, log)


def prepare(src: str, criu_bin: str, do_fetch: bool, git_url: str, log_path: str) -> None:
    """Make sure `src` holds CRIU with `criu_bin` and the zdtm static tests built."""
    with open(log_path, "w") as log:
        if not os.path.isdir(os.path.join(src, "test", "zdtm", "static")):
            if not do_fetch:
                raise CatalogError(f"{src}: no CRIU checkout (set CRIU_SRC or --criu-src, or "
                                   f"pass --fetch to clone CRIU {CRIU_TAG} there)")
            fetch(src, git_url, log)
        with build_lock(src):
            if not os.access(criu_bin, os.X_OK):
                if not do_fetch:
                    raise CatalogError(f"{criu_bin}: no CRIU binary (build it with `make -C {src} "
                                       f"criu`, or pass --fetch)")
                install_packages(log)
                _run(["make", f"-j{os.cpu_count() or 1}", "criu"], log, cwd=src)
            if not os.path.exists(os.path.join(src, "lib", "pycriu", "rpc_pb2.py")):
                # pycriu, which the tests' hooks use to read CRIU's images.
                _run(["make", f"-j{os.cpu_count() or 1}", "lib"], log, cwd=src)
            static = os.path.join(src, "test", "zdtm", "static")
            _run(["make", f"-j{os.cpu_count() or 1}", "--no-print-directory", "-C", static], log)


@contextlib.contextmanager
def build_lock(src: str):
    """Hold an exclusive lock on the checkout while building in it."""
    with open(os.path.join(src, "test", ".ssi-zdtm-build.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def zdtm_cgroups(test_dir: str):
    """The named cgroup v1 hierarchies zdtm.py mounts once before its tests (with its own
    scripts), and removes after; without them the cgroup tests meet controllers created while
    they are being dumped."""
    tag = str(uuid.uuid4())
    lock = "zdtm_mount_cgroups.lock"
    subprocess.run(["flock", lock, "./zdtm_mount_cgroups", tag], cwd=test_dir, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        subprocess.run(["flock", lock, "./zdtm_umount_cgroups", tag], cwd=test_dir,
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
