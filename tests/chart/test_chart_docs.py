"""The runbook covers every condition, reason, event and alert the product can show an SRE.

The lists come from the code (sloscale.conditions, sloscale.events, the control law's reasons and
the metrics source's unavailability reasons) and from the rendered PrometheusRule, so a new
reason or alert without a runbook entry fails here. Links inside the runbook, and the alerts'
runbook_url anchors, must land on a heading.
"""

from __future__ import annotations

import re

from chartlib import ROOT, Render, one

from sloscale.conditions import ConditionType
from sloscale.conditions import Reason as ConditionReason
from sloscale.events import EventReason
from sloscale.scaling.reasons import Reason as LawReason
from sloscale.scaling.snapshot import Unavailability

RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
# Control-law reasons that surface as a condition's reason (ScalingLimited, Infeasible, MetricsAvailable).
SURFACED = {LawReason.AT_MAX_REPLICAS, LawReason.AT_MIN_REPLICAS, LawReason.RATE_LIMITED,
            LawReason.TARGET_BELOW_FLOOR, LawReason.INFEASIBLE_AT_MAX_REPLICAS,
            LawReason.FRESH, LawReason.ZERO_TRAFFIC}


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_condition_type_has_a_section() -> None:
    for condition in ConditionType:
        assert f"### {condition.value}\n" in RUNBOOK, condition


def test_every_condition_reason_is_explained() -> None:
    reasons = {r.value for r in ConditionReason} | {r.value for r in Unavailability} | {r.value for r in SURFACED}
    missing = [r for r in sorted(reasons) if f"`{r}`" not in RUNBOOK]
    assert not missing, f"reasons missing from docs/runbook.md: {missing}"


def test_every_event_reason_has_a_row() -> None:
    missing = [r.value for r in EventReason if f"| `{r.value}` |" not in RUNBOOK]
    assert not missing, f"event reasons missing from docs/runbook.md: {missing}"


def test_every_alert_has_a_section_its_runbook_url_points_at(render: Render) -> None:
    docs = render(prometheusRule__enabled="true", prometheusRule__runbookUrl="https://docs.example/runbook.md")
    alerts = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == 5
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url.split("#")[1] in anchors(RUNBOOK), f"{alert['alert']}: {url} lands on no heading"


def test_links_inside_the_docs_land_on_headings() -> None:
    for name in ("runbook.md", "install.md"):
        text = (ROOT / "docs" / name).read_text()
        for target, fragment in re.findall(r"\]\(([\w./-]*)#([\w-]+)\)", text):
            page = (ROOT / "docs" / target).read_text() if target else text
            assert fragment in anchors(page), f"{name}: #{fragment} is not a heading of {target or name}"


def test_anchor_rule_matches_github() -> None:
    assert anchors("# A b\n### SloscaleOperatorDown\n## What's `new`?\n") == {
        "a-b", "sloscaleoperatordown", "whats-new",
    }
