#!/usr/bin/env python3
"""Names the etcd member a fault should hit, for `target = { command = [...] }`.

  member.py leader   [--away-from NAME] NAME=HOST:PORT ...
  member.py follower [--away-from NAME] NAME=HOST:PORT ...

Asks each member (etcd's JSON gateway: /v3/maintenance/status and
/v3/cluster/member/list) which member leads, and prints the name of the
leader, or of a follower. --away-from NAME keeps the fault off the member
the workload writes through: a follower other than NAME; and if NAME leads,
it first hands leadership to another member (MoveLeader,
/v3/maintenance/transfer-leadership), so that the fault measures the
cluster's failover, not the loss of the workload's own endpoint.
"""
import argparse
import json
import sys
import time
import urllib.request


def call(endpoint, path, body=None):
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(f"http://{endpoint}{path}", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=2) as answer:
        return json.load(answer)


def cluster(endpoints):
    """(leader's name, {name: member id}) as the members see it."""
    names = {}
    for endpoint in endpoints.values():
        try:
            for m in call(endpoint, "/v3/cluster/member/list").get("members", []):
                names[m["name"]] = m["ID"]
            break
        except OSError:
            continue
    leaders = set()
    for endpoint in endpoints.values():
        try:
            leader = call(endpoint, "/v3/maintenance/status").get("leader")
        except OSError:
            continue
        if leader and leader != "0":
            leaders.add(leader)
    by_id = {i: n for n, i in names.items()}
    if len(leaders) != 1 or next(iter(leaders)) not in by_id:
        return None, names
    return by_id[next(iter(leaders))], names


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["leader", "follower"])
    p.add_argument("--away-from")
    p.add_argument("members", nargs="+", help="NAME=HOST:PORT")
    a = p.parse_args()
    endpoints = dict(m.split("=", 1) for m in a.members)
    deadline = time.time() + 5
    while True:
        leader, ids = cluster(endpoints)
        if leader:
            break
        if time.time() > deadline:
            sys.exit("no single leader among " + ", ".join(endpoints))
        time.sleep(0.05)
    if a.role == "follower":
        print(next(n for n in sorted(endpoints) if n not in (leader, a.away_from)))
        return
    if leader == a.away_from:
        heir = next(n for n in sorted(endpoints) if n != leader)
        call(endpoints[leader], "/v3/maintenance/transfer-leadership", {"targetID": ids[heir]})
        while cluster(endpoints)[0] != heir:
            if time.time() > deadline:
                sys.exit(f"leadership did not move from {leader} to {heir}")
            time.sleep(0.02)
        leader = heir
    print(leader)


if __name__ == "__main__":
    main()
