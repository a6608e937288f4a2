"""Results of a run: the per-test listing (JSON and CSV), the table by category, the grouped
refusal messages, and the changes against an earlier run."""

import csv
import json
import re
from collections import Counter, defaultdict

from . import categories
from .runner import (DUMP_ERROR, FAIL, PASS, REFUSED, RESTORE_ERROR, START_ERROR,
                     TIMEOUT)

# Table columns: outcome and its heading; start errors are the test's, shown apart.
COLUMNS = [(PASS, "pass"), (FAIL, "**fail**"), (REFUSED, "refused"), (DUMP_ERROR, "dump err"),
           (RESTORE_ERROR, "restore err"), (TIMEOUT, "timeout")]


def save(path_json: str, path_csv: str, meta: dict, rows: list[dict]) -> None:
    """Write the run: JSON with everything, CSV with one line per test and engine."""
    with open(path_json, "w") as f:
        json.dump({"meta": meta, "tests": rows}, f, indent=1)
        f.write("\n")
    with open(path_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test", "category", "engine", "outcome", "step", "seconds", "message", "note"])
        for row in rows:
            for engine, r in row["engines"].items():
                w.writerow([row["name"], row["category"], engine, r["outcome"], r["step"],
                            r["seconds"], r["message"], r["note"]])


def load(path: str) -> tuple[dict, list[dict]]:
    """Read a JSON written by `save`."""
    with open(path) as f:
        data = json.load(f)
    return data["meta"], data["tests"]


def engines_of(rows: list[dict]) -> list[str]:
    """Engines present in the rows, ssi first."""
    seen = {e for row in rows for e in row["engines"]}
    return [e for e in ("ssi", "criu") if e in seen] + sorted(seen - {"ssi", "criu"})


def table(rows: list[dict]) -> str:
    """Markdown table: per category, the count of each outcome for each engine."""
    engines = engines_of(rows)
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    n = Counter()
    for row in rows:
        n[row["category"]] += 1
        for e, r in row["engines"].items():
            counts[row["category"]][e][r["outcome"]] += 1
            counts["total"][e][r["outcome"]] += 1
    n["total"] = len(rows)
    head = ["kind", "tests"] + [f"{e} {h}" for e in engines for _, h in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cat in [c for c in categories.order() if n[c]] + ["total"]:
        cells = [f"**{cat}**" if cat == "total" else cat, str(n[cat])]
        for e in engines:
            cells += [_cell(counts[cat][e][o], o == FAIL) for o, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    starts = {e: k for e in engines if (k := counts["total"][e][START_ERROR])}
    if starts:
        lines.append("")
        lines.append("Tests that did not start (not counted): "
                     + ", ".join(f"{e} {k}" for e, k in starts.items()))
    return "\n".join(lines)


def _cell(count: int, worst: bool) -> str:
    if count == 0:
        return "."
    return f"**{count}**" if worst else str(count)


def headline(rows: list[dict]) -> str:
    """How ssi does against CRIU: the issue's two goals."""
    if not {"ssi", "criu"} <= set(engines_of(rows)):
        return ""
    outcome = {e: {row["name"]: row["engines"][e]["outcome"] for row in rows
                   if e in row["engines"]} for e in ("ssi", "criu")}
    criu_pass = {t for t, o in outcome["criu"].items() if o == PASS}
    both = {t for t in criu_pass if outcome["ssi"].get(t) == PASS}
    silent = sorted(t for t, o in outcome["ssi"].items() if o == FAIL)
    share = 100.0 * len(both) / len(criu_pass) if criu_pass else 0.0
    return (f"ssi passes {len(both)} of the {len(criu_pass)} tests CRIU passes ({share:.1f} %; "
            f"goal >= 95 %); {len(silent)} fail after an accepted dump+restore (goal 0).")


def normalize(message: str) -> str:
    """A message with its numbers and paths blanked, so equal causes group together."""
    message = re.sub(r"/[^\s:,)]*", "PATH", message)
    message = re.sub(r"0x[0-9a-f]+", "N", message)
    return re.sub(r"\d+", "N", message)


def causes(rows: list[dict], engine: str, outcomes: tuple[str, ...]) -> str:
    """The messages of `engine`'s results with these outcomes, grouped, most frequent first."""
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        r = row["engines"].get(engine)
        if r and r["outcome"] in outcomes:
            groups[normalize(r["message"])].append(row["name"])
    lines = []
    for msg, tests in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"- {len(tests)} x `{msg}`: {', '.join(tests)}")
    return "\n".join(lines)


def listing(rows: list[dict], engine: str, outcomes: tuple[str, ...]) -> str:
    """One line per test of `engine` with these outcomes: name, outcome and message."""
    lines = []
    for row in rows:
        r = row["engines"].get(engine)
        if r and r["outcome"] in outcomes:
            note = f" ({r['note']})" if r["note"] else ""
            lines.append(f"- {row['name']} [{r['outcome']}]: {r['message']}{note}")
    return "\n".join(lines)


def changes(old: list[dict], new: list[dict]) -> str:
    """Tests whose outcome differs between two runs, per engine."""
    before = {(row["name"], e): r["outcome"] for row in old for e, r in row["engines"].items()}
    lines = []
    for row in new:
        for e, r in row["engines"].items():
            was = before.get((row["name"], e))
            if was is not None and was != r["outcome"]:
                lines.append(f"- {e} {row['name']}: {was} -> {r['outcome']}")
    return "\n".join(lines) or "(no outcome changed)"

