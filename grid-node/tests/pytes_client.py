"""Drives the ssi TES service with py-tes (and plain requests for what py-tes lacks).

Environment: TES_URL, TOKEN_ALICE, TOKEN_ADMIN, TOKEN_MALLORY, TOKEN_BOB, TOKEN_EXPIRED, WORK.
Exits non-zero with the failed check on stderr; prints one line per check passed.
"""
import os
import sys
import time

import requests
import tes

URL = os.environ["TES_URL"]
WORK = os.environ["WORK"]
T = {k: os.environ["TOKEN_" + k.upper()] for k in ["alice", "admin", "mallory", "bob", "expired"]}
BASE = URL + "/ga4gh/tes/v1"


def client(who):
    return tes.HTTPClient(URL, token=T[who], timeout=20)


START = time.time()


def check(cond, what):
    if not cond:
        sys.exit("FAILED: " + what)
    print(f"ok ({time.time() - START:5.1f} s): {what}")


def raw(method, path, who="alice", **kw):
    headers = kw.pop("headers", {})
    if who:
        headers["Authorization"] = "Bearer " + T[who]
    return requests.request(method, BASE + path, headers=headers, timeout=20, **kw)


def wait_state(c, tid, states, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        t = c.get_task(tid, view="MINIMAL")
        if t.state in states:
            return t
        time.sleep(0.1)
    sys.exit(f"FAILED: task {tid} never reached {states}")


alice = client("alice")
info = alice.get_service_info()
check(info.type["artifact"] == "tes" and info.type["version"] == "1.1.0", "service-info says TES 1.1.0")
check("ssi.mpi_ranks" in info.tes_resources_backend_parameters, "service-info lists backend parameters")

# A task with inline and file:// inputs, stdout to a file, outputs with a wildcard.
src = os.path.join(WORK, "source.txt")
task = tes.Task(
    name="wc-job",
    tags={"project": "demo", "kind": "wc"},
    inputs=[
        tes.Input(path=f"{WORK}/t1/in/inline.txt", content="one two three\n"),
        tes.Input(path=f"{WORK}/t1/in/copied.txt", url=f"file://{src}"),
    ],
    outputs=[
        tes.Output(path=f"{WORK}/t1/out/*.txt", path_prefix=f"{WORK}/t1/out/", url=f"file://{WORK}/results"),
    ],
    resources=tes.Resources(cpu_cores=1, ram_gb=0.1),
    executors=[
        tes.Executor(image="debian:12", command=["sh", "-c", f"mkdir -p {WORK}/t1/out && cat {WORK}/t1/in/inline.txt {WORK}/t1/in/copied.txt > {WORK}/t1/out/all.txt && id -u"],
                     stdout=f"{WORK}/t1/out/uid.txt"),
        tes.Executor(image="debian:12", command=["wc", "-w", f"{WORK}/t1/out/all.txt"], stdout=f"{WORK}/t1/out/count.txt"),
        tes.Executor(image="debian:12", command=["sh", "-c", "echo to-the-log; echo err-line >&2"]),
    ],
)
tid = alice.create_task(task)
check(isinstance(tid, str) and len(tid) > 8, "create returns an id")
done = alice.wait(tid, timeout=30)
check(done.state == "COMPLETE", f"task completes (state {done.state})")
minimal = alice.get_task(tid, view="MINIMAL")
check(minimal.id == tid and minimal.executors is None and minimal.name is None, "MINIMAL has id and state only")
basic = alice.get_task(tid, view="BASIC")
check(basic.name == "wc-job" and len(basic.executors) == 3, "BASIC has the task")
check(basic.inputs[0].content is None, "BASIC leaves out input content")
check(basic.logs[0].logs[2].stdout is None, "BASIC leaves out executor stdout")
full = alice.get_task(tid, view="FULL")
check(full.inputs[0].content == "one two three\n", "FULL has input content")
check(full.logs[0].logs[2].stdout == "to-the-log\n" and full.logs[0].logs[2].stderr == "err-line\n", "FULL has executor stdout/stderr")
check([l.exit_code for l in full.logs[0].logs] == [0, 0, 0], "every executor exited 0")
check(full.logs[0].metadata["ssi.account"].startswith("atlas"), "the task ran as a pool account")
outs = sorted(o.url for o in full.logs[0].outputs)
check(outs == [f"file://{WORK}/results/all.txt", f"file://{WORK}/results/count.txt", f"file://{WORK}/results/uid.txt"], f"wildcard outputs staged: {outs}")
check(open(f"{WORK}/results/count.txt").read().split()[0] == "5", "the executors ran in order on the staged inputs")

# Filters and pages.
ids = [alice.create_task(tes.Task(name=f"batch-{i}", tags={"batch": "b", "i": str(i)},
                                  executors=[tes.Executor(image="x", command=["true"])])) for i in range(5)]
for i in ids:
    alice.wait(i, timeout=30)
page = alice.list_tasks(view="MINIMAL", page_size=2)
seen = [t.id for t in page.tasks]
while page.next_page_token:
    page = alice.list_tasks(view="MINIMAL", page_size=2, page_token=page.next_page_token)
    seen += [t.id for t in page.tasks]
check(len(seen) == 6 and len(set(seen)) == 6 and set(ids) <= set(seen), "pages of 2 list every task once")
r = raw("GET", "/tasks", params={"name_prefix": "batch-", "view": "BASIC"}).json()
check(sorted(t["name"] for t in r["tasks"]) == [f"batch-{i}" for i in range(5)], "name_prefix filter")
r = raw("GET", "/tasks", params={"tag_key": ["batch", "i"], "tag_value": ["b", "3"]}).json()
check([t["id"] for t in r["tasks"]] == [ids[3]], "tag filter")
r = raw("GET", "/tasks", params={"state": "COMPLETE"}).json()
check(len(r["tasks"]) == 6, "state filter")
check(raw("GET", "/tasks", who="bob").json()["tasks"] == [], "another VO's user sees none of these tasks")

# Cancel: the owner may, another member may not, the VO admin may.
def sleeper(name):
    return alice.create_task(tes.Task(name=name, executors=[tes.Executor(image="x", command=["sleep", "30"])]))

s1 = sleeper("sleep-1")
wait_state(alice, s1, ["RUNNING"])
r = raw("POST", f"/tasks/{s1}:cancel", who="mallory")
check(r.status_code == 403 and "may not cancel" in r.json()["msg"], "another member may not cancel")
alice.cancel_task(s1)
# py-tes's wait() returns at CANCELING already: wait for the end.
check(wait_state(alice, s1, ["CANCELED"], 10).state == "CANCELED", "the owner cancels a running task")
s2 = sleeper("sleep-2")
wait_state(alice, s2, ["RUNNING"])
client("admin").cancel_task(s2)
check(wait_state(alice, s2, ["CANCELED"], 10).state == "CANCELED", "the VO admin cancels a member's task")

# Policies and credentials.
r = raw("POST", "/tasks", who="bob", json={"executors": [{"image": "x", "command": ["true"]}]})
check(r.status_code == 403 and "may not submit" in r.json()["msg"], "a user of another VO may not submit")
r = raw("POST", "/tasks", who="expired", json={"executors": [{"image": "x", "command": ["true"]}]})
check(r.status_code == 401 and "expired" in r.json()["msg"], "an expired credential is refused: " + r.text)
r = raw("GET", "/tasks", who=None)
check(r.status_code == 401, "no token, no tasks")

# Bad input.
r = raw("POST", "/tasks", json={"executors": [{"image": "x", "command": "true"}]})
check(r.status_code == 400 and r.json()["msg"].startswith("executors[0].command"), "a malformed task names the field: " + r.text)
r = raw("POST", "/tasks", json={"executors": [{"image": "x", "command": ["true"], "workdir": "rel"}]})
check(r.status_code == 400 and r.json()["msg"].startswith("executors[0].workdir"), "a relative workdir is refused")
r = raw("POST", "/tasks", data=b"{" + b" " * (5 << 20) + b"}", headers={"Content-Type": "application/json"})
check(r.status_code == 400 and r.json()["msg"].startswith("task: request body is larger"), "an oversized task is refused")
r = raw("GET", "/tasks/00000000-0000-0000-0000-000000000000")
check(r.status_code == 404, "an unknown id is 404")
r = raw("POST", "/tasks", json={"executors": [{"image": "x", "command": ["true"]}],
                                "resources": {"backend_parameters": {"gpus": "1"}, "backend_parameters_strict": True}})
check(r.status_code == 400 and r.json()["msg"].startswith("resources.backend_parameters.gpus"), "strict backend parameters")

# Executors that cannot start, exceed their wall time, or fail.
bad = alice.create_task(tes.Task(executors=[tes.Executor(image="x", command=["/nonexistent/prog"])]))
t = alice.wait(bad, timeout=30)
full = alice.get_task(bad, view="FULL")
check(t.state == "EXECUTOR_ERROR" and any("/nonexistent/prog" in l for l in full.logs[0].system_logs), "an executor that cannot start: EXECUTOR_ERROR with the reason")
slow = alice.create_task(tes.Task(executors=[tes.Executor(image="x", command=["sleep", "30"])],
                                  resources=tes.Resources(backend_parameters={"ssi.wall_time_secs": "1"})))
t = alice.wait(slow, timeout=30)
full = alice.get_task(slow, view="FULL")
check(t.state == "EXECUTOR_ERROR" and any("wall time" in l for l in full.logs[0].system_logs), "the wall time limit kills the executor")
fail = alice.create_task(tes.Task(executors=[tes.Executor(image="x", command=["sh", "-c", "exit 3"]),
                                             tes.Executor(image="x", command=["touch", f"{WORK}/never"])]))
t = alice.wait(fail, timeout=30)
full = alice.get_task(fail, view="FULL")
check(t.state == "EXECUTOR_ERROR" and [l.exit_code for l in full.logs[0].logs] == [3] and not os.path.exists(f"{WORK}/never"),
      "a failing executor stops the task")

# MPI through backend parameters.
if os.environ.get("MPI") == "1":
    mpi = alice.create_task(tes.Task(executors=[tes.Executor(image="x", command=["sh", "-c", "echo rank"], stdout=f"{WORK}/mpi.txt")],
                                     resources=tes.Resources(backend_parameters={"ssi.mpi_ranks": "3"})))
    t = alice.wait(mpi, timeout=60)
    full = alice.get_task(mpi, view="FULL")
    check(t.state == "COMPLETE" and open(f"{WORK}/mpi.txt").read().count("rank") == 3, f"an MPI task runs 3 ranks: {full.logs[0].system_logs}")

r = raw("GET", "/resources", params={"match": "cores>=1 && mem_gb>0"}).json()
check(r["matches"] is True and r["resources"]["ComputingManager"]["TotalLogicalCPUs"] >= 1, "the resource document and a requirement that holds")
check(raw("GET", "/resources", params={"match": "cores>=100000"}).json()["matches"] is False, "a requirement that does not hold")
r = raw("GET", "/resources", params={"match": "cpus>=1"})
check(r.status_code == 400 and r.json()["msg"].startswith("match: requirement"), "a bad requirement is 400: " + r.text)

r = requests.get(BASE + "/openapi.json", timeout=20).json()
check("/ga4gh/tes/v1/tasks/{id}:cancel" in r["paths"], "the OpenAPI document is served")
print("ALL PASSED")
