"""The private parts of google-cloud-firestore that crontick relies on are still there.

storage/firestore_client.py is the only module that touches them and lists each in
``PRIVATE_PARTS``; requirements.txt pins the library below its next major version.
A release (even a minor one) may still remove or reshape a private part: then the
test for that symbol fails here, naming it, instead of claims failing in production.
No emulator needed: clients are built without connecting.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage import firestore_client
from storage.firestore_client import CHANNEL_OPTIONS, PRIVATE_PARTS, private_part_problem

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("where", "name", "kind"), PRIVATE_PARTS, ids=[f"{where.rsplit('.', 1)[-1]}.{name}" for where, name, _ in PRIVATE_PARTS])
def test_each_private_part_is_still_there(where, name, kind):
    assert private_part_problem(where, name, kind) is None


@pytest.mark.parametrize(("where", "name", "kind"), [PRIVATE_PARTS[1], PRIVATE_PARTS[4], PRIVATE_PARTS[-1]], ids=["class", "instance", "module"])
def test_a_part_that_disappears_fails_naming_it(monkeypatch, where, name, kind):
    import importlib

    if kind == "module":
        monkeypatch.delattr(importlib.import_module(where), name)
    elif kind == "class":
        module, _, cls = where.rpartition(".")
        monkeypatch.delattr(getattr(importlib.import_module(module), cls), name)
    else:  # an instance attribute: the library's __init__ stops setting it
        from google.cloud.firestore_v1.base_client import BaseClient

        original = BaseClient.__init__

        def init_without(self, *args, **kwargs):
            original(self, *args, **kwargs)
            vars(self).pop(name)

        monkeypatch.setattr(BaseClient, "__init__", init_without)
    problem = private_part_problem(where, name, kind)
    assert problem is not None and f"{where}.{name}" in problem and "PRIVATE_PARTS" in problem


def test_a_reshaped_channel_helper_fails_naming_it(monkeypatch):
    from google.cloud.firestore_v1.base_client import BaseClient

    monkeypatch.setattr(BaseClient, "_firestore_api_helper", lambda self, transport, client_class: None)
    problem = private_part_problem("google.cloud.firestore_v1.base_client.BaseClient", "_firestore_api_helper", "class")
    assert problem is not None and "_firestore_api_helper('self', 'transport', 'client_class')" in problem


def test_the_client_module_is_the_only_one_touching_private_parts():
    """Service code (storage, scheduler, web, handlers, main) uses no private name of the
    library outside storage/firestore_client.py, and that module uses only the listed ones:
    what its Client subclass overrides or reads on `self`, and `client._x` / `base_client._x`."""
    listed = {name for _, name, _ in PRIVATE_PARTS}
    service = [*REPO.glob("storage/*.py"), *REPO.glob("scheduler/*.py"), *REPO.glob("web/**/*.py"), *REPO.glob("handlers/*.py"), REPO / "main.py"]
    outside: dict[str, set[str]] = {}
    for path in service:
        if path.name == "firestore_client.py":
            continue
        text = path.read_text()
        for private in ("_helpers", "_document_path", "_firestore_api", "_database_string", "_rpc_metadata", "_emulator_host", "base_client"):
            if re.search(rf"\b{private}\b", text):
                outside.setdefault(private, set()).add(path.name)
    assert outside == {}
    text = (REPO / "storage" / "firestore_client.py").read_text()
    subclass = text[text.index("class Client(firestore.Client):") : text.index("_CLIENT_CLASS = Client")]
    used = set(re.findall(r"\bdef (_[a-z]\w*)", subclass)) | set(re.findall(r"\bself\.(_[a-z]\w*)", subclass)) | set(re.findall(r"\b(?:client|base_client)\.(_[a-zA-Z]\w*)", text))
    assert used == listed, "storage/firestore_client.py uses private parts not in PRIVATE_PARTS (or lists ones it no longer uses)"


def test_the_pin_keeps_the_library_below_its_next_major():
    from google.cloud.firestore_v1 import __version__

    (line,) = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("google-cloud-firestore")]
    major = int(__version__.split(".")[0])
    assert line.replace(" ", "") == f"google-cloud-firestore>=2.16,<{major + 1}"


def test_the_single_threaded_stream_option_is_grpcs_own_name():
    """Not private, but experimental: an unknown channel option would be silently ignored."""
    import grpc.experimental

    assert ("SingleThreadedUnaryStream", 1) in CHANNEL_OPTIONS
    assert grpc.experimental.ChannelOptions.SingleThreadedUnaryStream == "SingleThreadedUnaryStream"
    assert firestore_client.client_class() is firestore_client.client_class()  # built once
