"""The console's Costs page: spend per day against the daily cap, this month against the
monthly cap, and spend per task, as inline SVG (no script, no CDN)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from html import escape

from koda.shared.messages import LimitsRecord
from koda.shared.runs_view import RunSummary, human_cost

from .pages import Html, table

DAYS = 30


def per_task(rows: list[RunSummary], since: datetime) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in rows:
        at = r.finished_at or r.started_at
        if at is not None and at >= since and r.cost_usd:
            out[r.task] += r.cost_usd
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def day_chart(days: list[tuple[str, float]], cap: float | None) -> str:
    """Bars per day, with the daily cap as a dashed line; each bar has a tooltip."""
    width, height, pad = 720, 180, 28
    top = max([v for _, v in days] + [cap or 0, 0.0001]) * 1.1
    bar = (width - pad) / len(days)
    parts = [f'<svg viewBox="0 0 {width} {height + 22}" role="img" aria-label="spend per day" '
             f'style="width:100%;height:auto;max-height:260px">']
    for i, (day, value) in enumerate(days):
        h = value / top * height
        x = pad + i * bar
        over = cap is not None and value > cap
        parts.append(f'<rect x="{x + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" '
                     f'height="{h:.1f}" rx="2" fill="{"#dc2626" if over else "#6366f1"}">'
                     f"<title>{escape(day)}: {human_cost(value)}</title></rect>")
        if i % 5 == 0 or i == len(days) - 1:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height + 15}" font-size="11" '
                         f'text-anchor="middle" fill="#6b7280">{escape(day[5:])}</text>')
    for frac in (0.5, 1.0):
        y = height - frac * height / 1.1
        parts.append(f'<text x="0" y="{y + 4:.1f}" font-size="10" fill="#9ca3af">'
                     f"{escape(human_cost(top / 1.1 * frac))}</text>")
    if cap:
        y = height - cap / top * height
        parts.append(f'<line x1="{pad}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dc2626" '
                     f'stroke-dasharray="5 4"/><text x="{width - 4}" y="{y - 4:.1f}" font-size="11" '
                     f'text-anchor="end" fill="#dc2626">daily cap {escape(human_cost(cap))}</text>')
    return "".join(parts) + "</svg>"


def task_chart(tasks: dict[str, float]) -> str:
    """Horizontal bars as plain boxes: they stay readable at any width."""
    if not tasks:
        return '<p class="muted">No spend recorded in run records yet.</p>'
    top = max(tasks.values()) or 1
    rows = "".join(
        f'<div class="hbar"><span class="label">{escape(task)}</span><span class="track">'
        f'<span class="fill" style="width:{max(value / top * 100, 0.5):.1f}%"></span></span>'
        f'<span class="value">{escape(human_cost(value))}</span></div>' for task, value in tasks.items())
    return f'<div class="hbars">{rows}</div>'


def costs(h: Html, limits: LimitsRecord, rows: list[RunSummary], cap_day: float | None,
          cap_month: float | None, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    days = [(f"{now - timedelta(days=n):%Y-%m-%d}", 0.0) for n in range(DAYS - 1, -1, -1)]
    days = [(d, limits.spend_day.get(d, 0.0)) for d, _ in days]
    today = limits.spend_day.get(f"{now:%Y-%m-%d}", 0.0)
    month = limits.spend_month.get(f"{now:%Y-%m}", 0.0)

    def against(label: str, value: float, cap: float | None) -> str:
        if not cap:
            return f'<div class="tile"><b>{human_cost(value)}</b><span>{label} · no cap set</span></div>'
        cls = "bad" if value >= cap else "warn" if value >= 0.8 * cap else "ok"
        return (f'<div class="tile"><b class="{cls}">{human_cost(value)}</b><span>{label} · '
                f"{value / cap:.0%} of the {human_cost(cap)} cap</span></div>")
    tiles = ('<div class="tiles">' + against("today", today, cap_day)
             + against("this month", month, cap_month)
             + f'<div class="tile"><b>{human_cost(sum(v for _, v in days))}</b>'
             f"<span>last {DAYS} days</span></div></div>")
    since = now - timedelta(days=DAYS)
    tasks = per_task(rows, since)
    body = (tiles + f'<div class="card"><h2 style="margin-top:0">Spend per day</h2>'
            f"{day_chart(days, cap_day)}</div>"
            f'<div class="card"><h2 style="margin-top:0">Spend per task, last {DAYS} days</h2>'
            f"{task_chart(tasks)}</div>")
    body += table(h, ["task", "cost#"], ([h.t(t), human_cost(v)] for t, v in tasks.items()),
                  "no runs with a cost yet")
    return h.page("Costs", body, None, 30.0)
