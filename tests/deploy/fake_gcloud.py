"""A stand-in for gcloud: bin/gcloud (first on PATH in tests/deploy) runs it.

Every call is appended to $FAKE_GCLOUD_LOG as one JSON line: the argv after
``gcloud``. What exists lives in the JSON file $FAKE_GCLOUD_STATE; create
commands add to it, so a second run sees what the first one made. Shape:

    {"project": "p", "service_accounts": ["a@p.iam.gserviceaccount.com"],
     "services": {"crontick": {"url": "...", "latestReadyRevisionName": "...",
                               "traffic": [{"revisionName": ..., "percent": ..., "tag": ..., "url": ...}],
                               "revisions": ["newest", ..., "oldest"]}},
     "scheduler_jobs": {"crontick-tick": {...flags}}, "indexes": [[...flags]], "ttls": [[field, group]],
     "exemptions": [[field, group]],
     "queues": {"projects/p/locations/l/queues/q": {...flags}}, "sa_bindings": [[account, member, role]],
     "bindings": [[...]], "fail": ["substring of a joined argv that must fail"],
     "project_number": "123456789012", "iap_bindings": [[service, member, role]]}  # services[...]["iap"]: IAP on

Flags with values are only understood in ``--flag=value`` form, the form the
scripts use. Anything it does not know fails, so a typo in a script shows.
"""

from __future__ import annotations

import json
import os
import sys

GLOBAL_VALUED = ("--project", "--region", "--location", "--format", "--database")


def main(argv: list[str]) -> int:
    with open(os.environ["FAKE_GCLOUD_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")
    state_path = os.environ["FAKE_GCLOUD_STATE"]
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)

    words = [a for a in argv if not a.startswith("-")]
    flags = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            flags[name] = value
    joined = " ".join(argv)

    def fail(message: str, code: int = 1) -> int:
        sys.stderr.write(f"ERROR: (gcloud.{'.'.join(words[:3])}) {message}\n")
        return code

    def save() -> None:
        with open(state_path, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1)

    for pattern in state.get("fail", []):
        if pattern in joined:
            return fail(f"PERMISSION_DENIED: injected failure for {pattern!r}")

    project = flags.get("--project", state.get("project", "p"))
    services = state.setdefault("services", {})
    cmd = tuple(words[:3])

    if words[:2] == ["auth", "print-identity-token"]:
        print("fake-identity-token")
        return 0
    if words[:2] == ["services", "enable"]:
        return 0
    if cmd == ("iam", "service-accounts", "describe"):
        email = words[3]
        if email in state.get("service_accounts", []):
            print(f"email: {email}")
            return 0
        return fail(f"NOT_FOUND: Unknown service account {email}")
    if cmd == ("iam", "service-accounts", "create"):
        email = f"{words[3]}@{project}.iam.gserviceaccount.com"
        accounts = state.setdefault("service_accounts", [])
        if email in accounts:
            return fail(f"ALREADY_EXISTS: Service account {words[3]} already exists within project")
        accounts.append(email)
        save()
        print(f"Created service account [{words[3]}].", file=sys.stderr)
        return 0
    if cmd == ("run", "services", "add-iam-policy-binding"):
        if words[3] not in services:
            return fail(f"NOT_FOUND: Resource 'services/{words[3]}' was not found")
        binding = [words[3], flags.get("--member"), flags.get("--role")]
        if binding not in state.setdefault("bindings", []):
            state["bindings"].append(binding)
            save()
        print("bindings: ...")
        return 0
    if cmd == ("iam", "service-accounts", "add-iam-policy-binding"):
        if words[3] not in state.get("service_accounts", []):
            return fail(f"NOT_FOUND: Unknown service account {words[3]}")
        binding = [words[3], flags.get("--member"), flags.get("--role")]
        if binding not in state.setdefault("sa_bindings", []):
            state["sa_bindings"].append(binding)
            save()
        print("bindings: ...")
        return 0
    if words[:3] == ["tasks", "queues", "add-iam-policy-binding"]:
        name = f"projects/{project}/locations/{flags.get('--location')}/queues/{words[3]}"
        if name not in state.get("queues", {}):
            return fail(f"NOT_FOUND: Requested entity was not found. {name}")
        binding = [name, flags.get("--member"), flags.get("--role")]
        if binding not in state.setdefault("queue_bindings", []):
            state["queue_bindings"].append(binding)
            save()
        print("bindings: ...")
        return 0
    if words[:2] == ["tasks", "queues"] and words[2] in ("describe", "create", "update"):
        queues = state.setdefault("queues", {})
        name = f"projects/{project}/locations/{flags.get('--location')}/queues/{words[3]}"
        settings = {k: v for k, v in flags.items() if k not in ("--project", "--location")}
        if words[2] == "describe":
            if name not in queues:
                return fail(f"NOT_FOUND: Requested entity was not found. {name}")
            print(f"name: {name}\nstate: RUNNING")
        elif words[2] == "create":
            if name in queues:
                return fail(f"ALREADY_EXISTS: Queue already exists: {name}")
            queues[name] = settings
            save()
        else:
            if name not in queues:
                return fail(f"NOT_FOUND: Requested entity was not found. {name}")
            queues[name].update(settings)
            save()
        return 0
    if cmd == ("run", "services", "describe"):
        service = services.get(words[3])
        if service is None:
            return fail(f"Cannot find service [{words[3]}]")
        fmt = flags.get("--format", "")
        if fmt == "value(status.url)":
            print(service["url"])
        elif fmt == "value(spec.template.spec.serviceAccountName)":
            print(service.get("serviceAccountName", ""))
        elif fmt == "json":
            status = {"url": service["url"], "traffic": service.get("traffic", [])}
            if service.get("latestReadyRevisionName"):
                status["latestReadyRevisionName"] = service["latestReadyRevisionName"]
            print(json.dumps({"metadata": {"name": words[3]}, "status": status}, indent=2))
        else:
            print(f"status:\n  url: {service['url']}")
        return 0
    if cmd == ("run", "revisions", "list"):
        service = services.get(flags.get("--service", ""))
        if service is None:
            return fail("Cannot find service")
        for name in service.get("revisions", []):
            print(name)
        return 0
    if cmd == ("run", "services", "update-traffic"):
        if words[3] not in services:
            return fail(f"Cannot find service [{words[3]}]")
        return 0
    if words[:2] == ["run", "deploy"]:
        service = services.setdefault(words[2], {"url": f"https://{words[2]}-abc-uc.a.run.app", "revisions": []})
        name = f"{words[2]}-{len(service['revisions']) + 1:05d}-new"
        service["revisions"].insert(0, name)
        service["latestReadyRevisionName"] = name
        save()
        return 0
    if words[:2] == ["builds", "submit"]:
        return 0
    if cmd == ("scheduler", "jobs", "describe"):
        job = state.get("scheduler_jobs", {}).get(words[3])
        if job is None:
            return fail(f"NOT_FOUND: Job not found: projects/{project}/locations/{flags.get('--location')}/jobs/{words[3]}")
        print(f"name: projects/{project}/locations/{flags.get('--location')}/jobs/{words[3]}\nstate: ENABLED")
        return 0
    if words[:3] == ["scheduler", "jobs", "create"] and words[3:4] == ["http"]:
        jobs = state.setdefault("scheduler_jobs", {})
        if words[4] in jobs:
            return fail("ALREADY_EXISTS: Job projects/.../jobs/... already exists.")
        jobs[words[4]] = flags
        save()
        return 0
    if words[:3] == ["scheduler", "jobs", "update"] and words[3:4] == ["http"]:
        jobs = state.setdefault("scheduler_jobs", {})
        if words[4] not in jobs:
            return fail("NOT_FOUND: Job not found")
        jobs[words[4]].update(flags)
        save()
        return 0
    if cmd in (("scheduler", "jobs", "pause"), ("scheduler", "jobs", "resume"), ("scheduler", "jobs", "run")):
        if words[3] not in state.get("scheduler_jobs", {}):
            return fail("NOT_FOUND: Job not found")
        return 0
    if words[:4] == ["firestore", "indexes", "composite", "create"]:
        key = sorted(a for a in argv[4:] if not a.startswith("--project="))
        indexes = state.setdefault("indexes", [])
        if key in indexes:
            return fail("ALREADY_EXISTS: index already exists")
        indexes.append(key)
        save()
        return 0
    if words[:4] == ["firestore", "indexes", "fields", "update"]:
        exemption = [words[4], flags.get("--collection-group")]
        if exemption not in state.setdefault("exemptions", []):
            state["exemptions"].append(exemption)
            save()
        return 0
    if words[:4] == ["firestore", "fields", "ttls", "update"]:
        ttl = [words[4], flags.get("--collection-group")]
        if ttl not in state.setdefault("ttls", []):
            state["ttls"].append(ttl)
            save()
        return 0
    if words[:2] == ["projects", "describe"]:
        print(state.get("project_number", "123456789012"))
        return 0
    if words[:4] == ["beta", "services", "identity", "create"]:
        print(f"Service identity created: service-{state.get('project_number', '123456789012')}@gcp-sa-iap.iam.gserviceaccount.com")
        return 0
    if words[:4] == ["beta", "run", "services", "update"]:
        if words[4] not in services:
            return fail(f"Cannot find service [{words[4]}]")
        if "--iap" in flags:
            services[words[4]]["iap"] = True
            save()
        return 0
    if words[:4] == ["beta", "iap", "web", "add-iam-policy-binding"]:
        if flags.get("--resource-type") != "cloud-run" or flags.get("--service") not in services:
            return fail(f"NOT_FOUND: no Cloud Run service {flags.get('--service')!r} (resource type {flags.get('--resource-type')!r})")
        binding = [flags["--service"], flags.get("--member"), flags.get("--role")]
        if binding not in state.setdefault("iap_bindings", []):
            state["iap_bindings"].append(binding)
            save()
        print("bindings: ...")
        return 0
    return fail(f"fake gcloud does not know this command: {joined}", code=2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
