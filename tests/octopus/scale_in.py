#!/usr/bin/env python3
"""scale_in.py URL KEY NODE [--stale-after S] [--terminate-pid PID]: the scale-in script of
Octopus's documentation ("Auto Scaling High Availability Nodes", "Removing a task node"),
request for request:

  1. GET /api/octopusservernodes/summary, find NODE by name (case-insensitive, trimmed);
  2. while it is active (LastSeen within 5 minutes; --stale-after S for tests): if it is not
     in maintenance mode, PUT {Id, Name, MaxConcurrentTasks, IsInMaintenanceMode: true} to
     /api/octopusservernodes//{Id} (the doubled slash is the original's); then poll /summary
     until RunningTaskCount is 0 or the node stops being active;
  3. GET /api/tasks?skip=0&node={Id}&states=Executing%2CCancelling&spaces=all&includeSystem=true
     &skip=0&take={MaxConcurrentTasks} and POST /api/tasks/{Id}/cancel for each;
  4. DELETE /api/octopusservernodes/{Id}.

Adaptations, each for a defect of the published script rather than a change of its logic: the
original writes node=$($nodeInformation.Id)) (a stray ')'), iterates the collection object
instead of its Items, and calls the task endpoints without URL or key; it polls without a
pause (here 100 ms). One difference of shoal's: it forgets only offline nodes (a live node would
register again at its next heartbeat, as an Octopus node does), so --terminate-pid stands in for
the autoscaler terminating the instance once it is drained, before the DELETE."""
import datetime
import os
import signal
import sys
import time

from octopus_api import Api


def arg(name, default=None):
    a = sys.argv
    return a[a.index(name) + 1] if name in a else default


def get_node(api, name):
    nodes = api.call("GET", "/api/octopusservernodes/summary")["Nodes"]
    for n in nodes:
        if n["Name"].lower().strip() == name.lower().strip():
            return n
    print(f"Unable to find node {name}.  Exiting.")
    sys.exit(1)


def is_active(node, stale_after):
    if node["LastSeen"] is None:
        print("The node has not been seen in a long time, the node last seen time is null.")
        return False
    last = datetime.datetime.fromisoformat(node["LastSeen"])
    if (datetime.datetime.now(datetime.timezone.utc) - last).total_seconds() > stale_after:
        print("The node has not checked in recently.  The node is no longer active.")
        return False
    return True


def main():
    url, key, name = sys.argv[1], sys.argv[2], sys.argv[3]
    stale_after = float(arg("--stale-after", "300"))
    pid = arg("--terminate-pid")
    api = Api(url, key)
    node = get_node(api, name)
    active = is_active(node, stale_after)
    if active:
        if node["IsInMaintenanceMode"] is False:
            body = {"Id": node["Id"], "Name": node["Name"],
                    "MaxConcurrentTasks": node["MaxConcurrentTasks"], "IsInMaintenanceMode": True}
            node = api.call("PUT", f"/api/octopusservernodes//{node['Id']}", body,
                            content_type="application/json; charset=utf-8")
            print(f"Drain on for {node['Name']}: IsInMaintenanceMode={node['IsInMaintenanceMode']}")
        while active:
            node = get_node(api, name)
            active = is_active(node, stale_after)
            if active and node["RunningTaskCount"] <= 0:
                print("The node has finished processing all the tasks, and the drain mode is "
                      "set to enabled.  It can be deleted now.")
                break
            time.sleep(0.1)
    if pid:
        print("Terminating the instance (the autoscaler's part)")
        os.kill(int(pid), signal.SIGTERM)
        while not get_node(api, name)["IsOffline"]:
            time.sleep(0.05)
    print("Cancelling all active tasks for that node")
    tasks = api.call("GET", f"/api/tasks?skip=0&node={node['Id']}&states=Executing%2CCancelling"
                     f"&spaces=all&includeSystem=true&skip=0&take={node['MaxConcurrentTasks']}")
    for task in tasks["Items"]:
        print(f"Cancelling {task['Id']}")
        api.call("POST", f"/api/tasks/{task['Id']}/cancel")
    print("The node can be safely removed from Octopus now.  Deleting.")
    api.call("DELETE", f"/api/octopusservernodes/{node['Id']}")
    print("Deleted")


if __name__ == "__main__":
    main()
