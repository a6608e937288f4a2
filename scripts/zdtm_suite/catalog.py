"""The zdtm static tests of a CRIU checkout: which exist, how each is started, which can run here.

Everything comes from the checkout itself, read the way CRIU's `test/zdtm.py` reads it:
- the test list is every executable in `test/zdtm/static` minus the exclusions of
  `test/zdtm.desc`;
- each test's `NAME.desc` (a Python literal or expression, empty or absent meaning `{}`) gives
  its `flavor` (`h` = host, `ns`, `uns`), `flags` (`suid`, `noauto`, `crfail`, ...), needed
  kernel `feature`s (asked of `criu check --feature`), `arch`, `timeout` and extra CRIU options
  (`opts`, `dopts`, `ropts`);
- an executable `NAME.checkskip` that exits non-zero means "cannot run on this machine";
- the static Makefile's `NAME.pid` rule is the command line that starts it (`--pidfile`,
  `--outfile` and, for some, `--filename`/`--dirname` or own arguments); `make -n` prints it.
"""

import ast
import os
import shlex
import stat
import subprocess
from dataclasses import dataclass, field

from . import categories

ARCH = os.uname().machine

# Ids zdtm.py gives tests without the `suid` flag (they switch to them in test_init).
TEST_UID = 18943
TEST_GID = 58467
TEST_GROUPS = (27495, 48244)


class CatalogError(Exception):
    """The CRIU checkout is missing a piece the suite needs."""


@dataclass
class Test:
    """One zdtm static test and how to run it."""

    name: str
    desc: dict
    # Start command relative to the test's working directory; argv[0] is an absolute path.
    argv: list[str]
    category: str = field(default="")

    def flag(self, name: str) -> bool:
        """Whether the .desc `flags` has `name`."""
        return name in self.desc.get("flags", "").split()

    @property
    def as_root(self) -> bool:
        """Whether the test keeps running as root (`suid`) instead of switching to TEST_UID."""
        return self.flag("suid")

    @property
    def timeout(self) -> int:
        """Seconds the test may take to start or to check itself (zdtm's default is 30)."""
        return int(self.desc.get("timeout") or 30)

    def criu_opts(self, action: str) -> list[str]:
        """Extra CRIU options the .desc asks for on `dump` or `restore`."""
        extra = "dopts" if action == "dump" else "ropts"
        return self.desc.get("opts", "").split() + self.desc.get(extra, "").split()


class Checkout:
    """A CRIU source tree with its zdtm static tests built."""

    def __init__(self, root: str, criu_bin: str | None = None):
        self.root = os.path.abspath(root)
        self.test_dir = os.path.join(self.root, "test")
        self.static_dir = os.path.join(self.test_dir, "zdtm", "static")
        self.criu_bin = criu_bin or os.path.join(self.root, "criu", "criu")
        self._features: dict[str, bool] = {}
        if not os.path.isdir(self.static_dir):
            raise CatalogError(
                f"{self.static_dir}: no zdtm static tests (is {root} a CRIU checkout?)")

    def test_names(self) -> list[str]:
        """Names of the static tests, as zdtm.py's `all_tests` lists them."""
        excluded = set(self._zdtm_desc().get("exclude", []))
        names = []
        for entry in os.scandir(self.static_dir):
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IXUSR:
                continue
            if entry.name.endswith((".checkskip", ".hook")):
                continue
            if f"static/{entry.name}" in excluded:
                continue
            names.append(entry.name)
        return sorted(names)

    def _zdtm_desc(self) -> dict:
        path = os.path.join(self.test_dir, "zdtm.desc")
        with open(path) as f:
            return ast.literal_eval(f.read())

    def desc(self, name: str) -> dict:
        """The test's .desc; `{}` when absent or empty (zdtm.py's `default_test`)."""
        path = os.path.join(self.static_dir, name + ".desc")
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        if not text.strip():
            return {}
        try:
            return ast.literal_eval(text)
        except ValueError:
            # A few .desc files compute their value (mnt_ext_dev reads an environment variable);
            # zdtm.py evaluates them, so do the same with only `os` in scope.
            pass
        except SyntaxError as e:
            raise CatalogError(f"{path}: not a Python expression: {e}") from e
        try:
            return eval(text, {"os": os})  # pylint: disable=eval-used
        except Exception as e:
            raise CatalogError(f"{path}: cannot evaluate: {e}") from e

    def start_commands(self, names: list[str]) -> dict[str, list[str]]:
        """The Makefile's start command of each test (`make -n NAME.pid`), argv[0] absolute."""
        # One make run for all: a make per test costs ~50 ms each.
        out = subprocess.run(
            ["make", "-n", "--no-print-directory", "-C", self.static_dir]
            + [n + ".pid" for n in names],
            capture_output=True, text=True, check=False)
        wanted = {"./" + n: n for n in names}
        commands = {}
        for line in out.stdout.splitlines():
            try:
                argv = shlex.split(line)
            except ValueError:
                continue
            if argv and argv[0] in wanted:
                name = wanted[argv[0]]
                commands[name] = [os.path.join(self.static_dir, name)] + argv[1:]
        return commands

    def feature(self, name: str) -> bool:
        """Whether this kernel has `name`, as `criu check --feature` says (cached)."""
        if name not in self._features:
            r = subprocess.run([self.criu_bin, "check", "--no-default-config", "-v0",
                                "--feature", name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            self._features[name] = r.returncode == 0
        return self._features[name]

    def checkskip(self, name: str) -> bool:
        """True when the test's own `.checkskip` script says it cannot run here."""
        script = os.path.join(self.static_dir, name + ".checkskip")
        if not os.access(script, os.X_OK):
            return False
        r = subprocess.run([script], cwd=self.test_dir, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        return r.returncode != 0

    def hook(self, name: str) -> str | None:
        """Path of the test's executable `.hook`, if it has one."""
        path = os.path.join(self.static_dir, name + ".hook")
        return path if os.access(path, os.X_OK) else None


def skip_reason(co: Checkout, name: str, desc: dict) -> str | None:
    """Why zdtm.py would not run `name` in the host flavour here, or None if it would."""
    if desc.get("arch", ARCH) != ARCH:
        return f"arch {desc['arch']}"
    if "noauto" in desc.get("flags", "").split():
        return "noauto (manual run only)"
    if "h" not in desc.get("flavor", "h ns uns").split():
        return f"flavor {desc.get('flavor')} (no host flavour)"
    for feat in desc.get("feature", "").split():
        if not co.feature(feat):
            return f"no {feat} feature"
    if co.checkskip(name):
        return "checkskip failed"
    return None


def select(co: Checkout, only: set[str] | None = None) -> tuple[list[Test], list[tuple[str, str]]]:
    """The tests runnable in the host flavour (restricted to `only` if given) and the skipped
    ones with their reason."""
    names = co.test_names()
    if only is not None:
        unknown = only - set(names)
        if unknown:
            raise CatalogError(f"no such zdtm static test: {', '.join(sorted(unknown))}")
        names = [n for n in names if n in only]
    runnable, skipped = [], []
    for name in names:
        desc = co.desc(name)
        reason = skip_reason(co, name, desc)
        if reason:
            skipped.append((name, reason))
        else:
            runnable.append((name, desc))
    commands = co.start_commands([n for n, _ in runnable])
    tests = []
    for name, desc in runnable:
        if name not in commands:
            skipped.append((name, "no NAME.pid rule in the static Makefile"))
            continue
        tests.append(Test(name, desc, commands[name], categories.category(name)))
    return tests, sorted(skipped)
