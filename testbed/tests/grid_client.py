"""The grid client side of tests/grid.rs: py-tes submits tasks to one node's job service and
reads them back from another's. Prints one JSON document."""
import json, os, sys, time
import tes

SUBMIT, READ, WORK = os.environ["TES_SUBMIT"], os.environ["TES_READ"], os.environ["WORK"]
token = os.environ["TOKEN"]
mode = sys.argv[1]

def client(url):
    return tes.HTTPClient(url, timeout=30, token=token)

def wait(c, ids):
    deadline = time.time() + 120
    while time.time() < deadline:
        tasks = [c.get_task(i, view="FULL") for i in ids]
        if all(t.state in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED") for t in tasks):
            return tasks
        time.sleep(0.3)
    raise SystemExit("tasks did not end in time: " + str([t.state for t in tasks]))

if mode == "submit":
    c = client(SUBMIT)
    ids = []
    for n in range(3):
        out = f"{WORK}/out{n}.txt"
        task = tes.Task(
            name=f"grid-e2e-{n}",
            executors=[tes.Executor(image="host", command=["sh", "-c", "echo $$; id -u; sleep 3"], stdout=out)],
            outputs=[],
        )
        ids.append(c.create_task(task))
    tasks = wait(c, ids)
    print(json.dumps([{"id": t.id, "state": t.state, "logs": t.logs[0].system_logs} for t in tasks]))
else:
    c = client(READ)
    ids = json.loads(os.environ["IDS"])
    tasks = [c.get_task(i, view="BASIC") for i in ids]
    # py-tes 1.1.4's list_tasks takes no name_prefix: list all and count ours.
    listed = [t for t in (c.list_tasks(view="MINIMAL").tasks or []) if t.id in ids]
    print(json.dumps({"states": [t.state for t in tasks], "listed": len(listed)}))
