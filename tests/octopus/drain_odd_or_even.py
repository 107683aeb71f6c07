#!/usr/bin/env python3
"""drain_odd_or_even.py URL KEY [--even]: OctopusDeploy-Api's
REST/PowerShell/Administration/DrainOddOrEvenOctopusServerNodes.ps1, request for request.

It reads /api/octopusservernodes/summary, takes each node's number from the part of its name
after the first '-' (else its index), and for every odd (or, with --even, even) node not
already in maintenance mode PUTs {Id, Name, MaxConcurrentTasks, IsInMaintenanceMode: true} to
$OctopusUrl + Links.Node. Like the original, it sends the node's MaxConcurrentTasks in Name
(ConvertTo-Json of the same hashtable) and no Content-Type of its own choosing
(Invoke-RestMethod's default for a string body is application/x-www-form-urlencoded)."""
import sys

from octopus_api import Api


def main():
    url, key = sys.argv[1], sys.argv[2]
    drain_even = "--even" in sys.argv[3:]
    api = Api(url, key)
    nodes = api.call("GET", "/api/octopusservernodes/summary")["Nodes"]
    for i, node in enumerate(nodes):
        name = node["Name"]
        parts = name.split("-")
        number = i
        if len(parts) > 1:
            try:
                number = int(parts[1])
            except ValueError:
                print(f"WARNING: Unable to parse node number from {name}, setting to index: {i}")
        else:
            print(f"WARNING: Unable to determine a possible node number from {name}, "
                  f"setting to index: {i}")
        odd = number % 2
        if (drain_even and odd == 0) or (not drain_even and odd == 1):
            if node["IsInMaintenanceMode"] is True:
                print(f"Skipping drain of node: {name} as its already in a draining/drained state")
                continue
            print(f"Draining node: {name}")
            body = {"Id": node["Id"], "Name": node["MaxConcurrentTasks"],
                    "MaxConcurrentTasks": node["MaxConcurrentTasks"], "IsInMaintenanceMode": True}
            api.call("PUT", node["Links"]["Node"], body,
                     content_type="application/x-www-form-urlencoded")
        else:
            print(f"Skipping drain of node: {name} as its not a valid candidate")


if __name__ == "__main__":
    main()
