"""web/routing.py: URL builders compiled on first use, and the one private part of Werkzeug behind it.

If a Werkzeug release removes ``Rule._compile_builder``, reshapes it, or stops calling it
from ``Rule.compile``, the tests naming it fail here (the app itself would only lose the
saving: the override passes its arguments through).
"""

from __future__ import annotations

import threading

import pytest
from flask import url_for
from werkzeug.routing import Map, Rule

import main
from web.routing import PRIVATE_PARTS, CrontickFlask, LazyBuilderRule


@pytest.fixture
def real_compiles(monkeypatch):
    """Counts the calls of Werkzeug's own ``Rule._compile_builder``."""
    calls: list[str] = []
    original = Rule._compile_builder

    def counting(self, *args, **kwargs):
        calls.append(self.rule)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Rule, "_compile_builder", counting)
    return calls


def test_the_private_part_is_still_there():
    for where, name in PRIVATE_PARTS:
        assert where == "werkzeug.routing.Rule"
        assert callable(getattr(Rule, name, None)), f"werkzeug.routing.Rule.{name} is gone: web/routing.py overrides it (PRIVATE_PARTS)"


def test_rule_compile_still_asks_for_its_builders(monkeypatch):
    """Rule.compile gets its two builders from _compile_builder: the override is on the path."""
    asked: list[tuple] = []
    monkeypatch.setattr(LazyBuilderRule, "_compile_builder", lambda self, *a, **k: asked.append(a + tuple(k.values())) or (lambda rule, **v: ("", "/")))
    Map([LazyBuilderRule("/jobs/<job_id>", endpoint="job")])
    assert sorted(asked) == [(False,), (True,)], "werkzeug.routing.Rule.compile no longer calls Rule._compile_builder(append_unknown): web/routing.py saves nothing"


def test_adding_rules_compiles_no_builder_and_the_first_url_compiles_one(real_compiles):
    url_map = Map([LazyBuilderRule("/jobs/<job_id>", endpoint="job"), LazyBuilderRule("/jobs", endpoint="jobs")])
    assert real_compiles == []
    urls = url_map.bind("crontick.example")
    assert urls.build("job", {"job_id": "a b"}) == "/jobs/a%20b"
    assert urls.build("job", {"job_id": "x", "page": "2"}) == "/jobs/x?page=2"  # the append_unknown builder
    assert real_compiles == ["/jobs/<job_id>"]  # url_for's builder (append_unknown), once
    assert urls.build("job", {"job_id": "y"}, append_unknown=False) == "/jobs/y"
    assert urls.build("job", {"job_id": "z", "page": "2"}, append_unknown=False) == "/jobs/z"
    assert real_compiles == ["/jobs/<job_id>", "/jobs/<job_id>"]


def test_every_url_of_the_app_builds_as_werkzeug_builds_it(tmp_path, real_compiles):
    app = main.create_app({"SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(tmp_path / "jobs.json"), "AUTH_MODE": "disabled", "ENVIRONMENT": "local"})
    assert isinstance(app, CrontickFlask) and real_compiles == []
    rules = list(app.url_map.iter_rules())
    assert len(rules) >= 20 and all(isinstance(rule, LazyBuilderRule) for rule in rules)
    eager = Map([Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods, defaults=rule.defaults) for rule in rules])
    lazy_urls, eager_urls = app.url_map.bind("crontick.example"), eager.bind("crontick.example")
    for rule in rules:
        values = {arg: "v/1 é" if rule._converters[arg].__class__.__name__ == "PathConverter" else "v1 é" for arg in rule.arguments}
        values["extra"] = "?&"
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        assert lazy_urls.build(rule.endpoint, values, method=method) == eager_urls.build(rule.endpoint, values, method=method), rule.rule
    with app.test_request_context():
        assert url_for("console.job_detail", job_id="j 1") == "/jobs/j%201"


def test_threads_building_a_first_url_at_once_compile_it_once(real_compiles):
    urls = Map([LazyBuilderRule("/jobs/<job_id>", endpoint="job")]).bind("crontick.example")
    start = threading.Barrier(8)
    built: list[str] = []

    def build(n: int) -> None:
        start.wait()
        built.append(urls.build("job", {"job_id": str(n)}))

    threads = [threading.Thread(target=build, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(built) == [f"/jobs/{n}" for n in range(8)]
    assert real_compiles == ["/jobs/<job_id>"]
