"""Pictures for the console, drawn here as inline SVG (no chart library in the browser).

Each figure is two steps: a pure summary of execution records (tested against known
executions) and a drawing of it. Every mark carries its numbers as ``data-*``
attributes and a ``<title>`` (the tooltip), so what the picture shows can be read
back exactly. Colours come from the stylesheet (classes ``o-<outcome>``, ``p50``,
``p95``), which follows ``prefers-color-scheme``.

* :func:`hourly_summary` / :func:`lag_chart` / :func:`runs_chart`: over the 24 hours
  ending with the current one (UTC), per hour: schedule lag (fire time to start) p50
  and p95 of the runs whose handler ran (succeeded, failed, dead), and runs by outcome.
* :func:`duration_strip`: a job's last runs, oldest first, as bars as tall as their
  duration, coloured by outcome.

Percentiles are nearest-rank on the sorted values, ``values[min(n - 1, int(q * n))]``,
the same rule as the shadow report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from markupsafe import Markup, escape

from scheduler.model import Execution, Outcome

HOURS = 24
RAN = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD)
OUTCOME_ORDER = tuple(Outcome)
WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 22


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Hour:
    """One hour of the console's figures: the runs' start lags (seconds) and their outcomes."""

    start: datetime
    lags: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def p50(self) -> float | None:
        return percentile(self.lags, 0.5)

    @property
    def p95(self) -> float | None:
        return percentile(self.lags, 0.95)

    @property
    def runs(self) -> int:
        return sum(self.outcomes.values())


def hourly_summary(executions: Sequence[Execution], now: datetime) -> list[Hour]:
    """24 hours (UTC), oldest first, the last one being the hour ``now`` is in."""
    last = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=HOURS - 1)
    hours = [Hour(first + timedelta(hours=i)) for i in range(HOURS)]
    for e in executions:
        index = int((e.started_at - first) // timedelta(hours=1))
        if not 0 <= index < HOURS:
            continue
        hour = hours[index]
        hour.outcomes[e.outcome.value] = hour.outcomes.get(e.outcome.value, 0) + 1
        if e.outcome in RAN:
            hour.lags.append(max((e.started_at - e.fire_at).total_seconds(), 0.0))
    return hours


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.0f} min"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value * 1000:.0f} ms"


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    step = 10 ** len(str(int(top))) / 10 if top >= 1 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if top <= step * factor:
            return step * factor
    return top


def _frame(label: str, y_max_text: str, hours: Sequence[Hour], body: list[str], legend: list[tuple[str, str]]) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="figure" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{escape(y_max_text)}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    slot = plot_w / HOURS
    for i, hour in enumerate(hours):
        if i % 6 == 0 or i == HOURS - 1:
            parts.append(f'<text class="tick" x="{LEFT + slot * i + slot / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{hour.start:%H}:00</text>')
    parts += body
    x = LEFT + 4
    for css, text in legend:
        parts.append(f'<rect class="{css}" x="{x}" y="{TOP}" width="10" height="10"/><text class="legend" x="{x + 14}" y="{TOP + 9}">{escape(text)}</text>')
        x += 24 + 7 * len(text)
    parts.append("</svg>")
    return Markup("".join(parts))


def lag_chart(hours: Sequence[Hour]) -> Markup:
    """p50 and p95 of the schedule lag per hour: a line each, a point per hour with runs."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice(max((h.p95 for h in hours if h.p95 is not None), default=0.0))
    slot = plot_w / HOURS
    body: list[str] = []
    for name in ("p95", "p50"):
        points = []
        marks = []
        for i, hour in enumerate(hours):
            value = getattr(hour, name)
            if value is None:
                continue
            x, y = LEFT + slot * i + slot / 2, TOP + plot_h - plot_h * min(value / top, 1.0)
            points.append(f"{x:.1f},{y:.1f}")
            marks.append(
                f'<circle class="{name}" cx="{x:.1f}" cy="{y:.1f}" r="3" data-hour="{hour.start:%Y-%m-%dT%H:00Z}" data-{name}="{_num(value)}" data-runs="{len(hour.lags)}">'
                f"<title>{hour.start:%H}:00 UTC: {name} {escape(_seconds(value))} over {len(hour.lags)} runs</title></circle>"
            )
        if len(points) > 1:
            body.append(f'<polyline class="{name}" fill="none" points="{" ".join(points)}"/>')
        body += marks
    if not any(h.lags for h in hours):
        body.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no runs in the last 24 hours</text>')
    return _frame("Schedule lag (fire time to start) per hour, p50 and p95, last 24 hours (UTC)", _seconds(top), hours, body, [("p50", "p50"), ("p95", "p95")])


def runs_chart(hours: Sequence[Hour]) -> Markup:
    """Runs per hour, stacked by outcome."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice(max((h.runs for h in hours), default=0))
    slot = plot_w / HOURS
    body: list[str] = []
    seen: list[str] = []
    for i, hour in enumerate(hours):
        y = TOP + plot_h
        for outcome in OUTCOME_ORDER:
            count = hour.outcomes.get(outcome.value, 0)
            if not count:
                continue
            if outcome.value not in seen:
                seen.append(outcome.value)
            height = plot_h * count / top
            y -= height
            body.append(
                f'<rect class="o-{outcome.value}" x="{LEFT + slot * i + 1:.1f}" y="{y:.1f}" width="{slot - 2:.1f}" height="{height:.1f}" '
                f'data-hour="{hour.start:%Y-%m-%dT%H:00Z}" data-outcome="{outcome.value}" data-count="{count}">'
                f"<title>{hour.start:%H}:00 UTC: {count} {outcome.value}</title></rect>"
            )
    if not seen:
        body.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no runs in the last 24 hours</text>')
    legend = [(f"o-{name}", name) for name in seen]
    return _frame("Runs per hour by outcome, last 24 hours (UTC)", f"{top:g}", hours, body, legend)


def duration_strip(executions: Sequence[Execution]) -> Markup:
    """The runs given (newest first, as stores list them), drawn oldest first."""
    runs = list(reversed(executions))
    width, height, pad = 720, 90, 4
    label = f"Last {len(runs)} runs: duration, coloured by outcome (oldest left)"
    parts = [f'<svg class="figure strip" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    if not runs:
        parts.append(f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">no runs yet</text></svg>')
        return Markup("".join(parts))
    longest = max(e.duration_ms for e in runs) or 1.0
    slot = (width - 2 * pad) / max(len(runs), 50)
    plot_h = height - 2 * pad - 12
    for i, e in enumerate(runs):
        bar = max(plot_h * e.duration_ms / longest, 2.0)  # a zero-length run still shows its outcome
        parts.append(
            f'<rect class="o-{e.outcome.value}" x="{pad + slot * i + 1:.1f}" y="{pad + plot_h - bar:.1f}" width="{max(slot - 2, 1):.1f}" height="{bar:.1f}" '
            f'data-outcome="{e.outcome.value}" data-duration-ms="{_num(e.duration_ms)}" data-started="{e.started_at:%Y-%m-%dT%H:%M:%SZ}">'
            f"<title>{e.started_at:%Y-%m-%d %H:%M:%S} UTC: {e.outcome.value}, {escape(_seconds(e.duration_ms / 1000))}, attempt {e.attempt}</title></rect>"
        )
    parts.append(f'<text class="tick" x="{pad}" y="{height - 2}">longest {escape(_seconds(longest / 1000))}</text></svg>')
    return Markup("".join(parts))
