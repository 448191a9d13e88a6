"""The benchmark's chart after a run of some parts only (`--only`): the other parts' panels
stay as the chart before had them."""

from __future__ import annotations

from bench.chart import Panel, read_panels, redrawn, render_svg

PARTS = ("returns", "complaints", "notifier")


def panel(part: str, title: str, rate: float | None) -> Panel:
    return Panel(title, "events/s", ["events/s"], [("minimal consumer", [rate])], part)


OLD = [
    panel("returns", "Throughput", 1875.0),
    panel("returns", "CPU per input event", None),
    panel("complaints", "Complaints", 900.0),
    panel("notifier", "Notifier", 400.0),
]


def test_a_chart_carries_the_figures_it_was_drawn_from() -> None:
    assert read_panels(render_svg(OLD)) == OLD


def test_a_run_of_one_part_keeps_the_other_parts_panels_in_their_place() -> None:
    new = panel("complaints", "Complaints", 950.0)
    svg = redrawn(render_svg(OLD), [new], ["complaints"], PARTS)
    assert svg is not None
    assert read_panels(svg) == [OLD[0], OLD[1], new, OLD[3]]
    assert "950 events/s" in svg and "900 events/s" not in svg
    assert "1,875 events/s" in svg and "400 events/s" in svg


def test_a_run_of_every_part_draws_only_its_own_panels() -> None:
    new = [panel("returns", "Throughput", 2000.0), panel("notifier", "Notifier", 500.0)]
    svg = redrawn(render_svg(OLD), new, PARTS, PARTS)
    assert svg is not None
    assert read_panels(svg) == new


def test_a_chart_without_its_figures_is_left_alone_by_a_run_of_some_parts() -> None:
    drawn_before = '<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>\n'
    new = [panel("notifier", "Notifier", 500.0)]
    assert redrawn(drawn_before, new, ["notifier"], PARTS) is None
    assert redrawn(None, new, ["notifier"], PARTS) == render_svg(new)
    assert redrawn(drawn_before, new, PARTS, PARTS) == render_svg(new)
