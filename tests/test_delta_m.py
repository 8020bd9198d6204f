"""Δm (Maninis et al. 2019; Vandenhende et al. 2021): hand-computed cases, the sign convention, errors."""
import math

import pytest

from mtl.metrics import delta_m, delta_m_lower_is_better, relative_improvements


def test_mixed_directions_by_hand():
    # accuracy 0.80 vs 0.75 (higher better): +6.667 %; error 0.9 vs 1.0 (lower better): +10 %
    metrics, baselines = {"acc": 0.80, "err": 0.9}, {"acc": 0.75, "err": 1.0}
    directions = {"acc": True, "err": False}
    per_task = relative_improvements(metrics, baselines, directions)
    assert per_task == {"acc": pytest.approx(100 * 0.05 / 0.75), "err": pytest.approx(10.0)}
    assert delta_m(metrics, baselines, directions) == pytest.approx((100 / 15 + 10.0) / 2)


def test_worse_on_one_task_better_on_another_by_hand():
    # mIoU 40 vs 50 (higher better): −20 %; depth abs err 0.5 vs 0.6 (lower better): +16.667 %;
    # rel err 0.25 vs 0.2 (lower better): −25 %
    metrics = {"seg": 40.0, "abs": 0.5, "rel": 0.25}
    baselines = {"seg": 50.0, "abs": 0.6, "rel": 0.2}
    directions = {"seg": True, "abs": False, "rel": False}
    expected = (-20.0 + 100 * 0.1 / 0.6 - 25.0) / 3
    assert delta_m(metrics, baselines, directions) == pytest.approx(expected)
    assert expected == pytest.approx(-9.444444, abs=1e-5)


def test_single_direction_for_all_tasks_and_equal_to_baseline():
    assert delta_m({"a": 0.9, "b": 0.6}, {"a": 0.9, "b": 0.6}, True) == 0.0
    assert delta_m({"a": 1.1, "b": 0.5}, {"a": 1.0, "b": 1.0}, True) == pytest.approx((10.0 - 50.0) / 2)
    assert delta_m({"a": 1.1, "b": 0.5}, {"a": 1.0, "b": 1.0}, False) == pytest.approx((-10.0 + 50.0) / 2)


def test_improvement_can_exceed_100_percent_for_lower_is_better():
    # error halved → +50 %; error doubled → −100 %; accuracy tripled → +200 %
    assert delta_m({"e": 0.5}, {"e": 1.0}, False) == pytest.approx(50.0)
    assert delta_m({"e": 2.0}, {"e": 1.0}, False) == pytest.approx(-100.0)
    assert delta_m({"a": 0.9}, {"a": 0.3}, True) == pytest.approx(200.0)


def test_lower_is_better_convention_is_the_sign_flip():
    metrics, baselines = {"acc": 0.7, "err": 1.2}, {"acc": 0.75, "err": 1.0}
    directions = {"acc": True, "err": False}
    assert delta_m_lower_is_better(metrics, baselines, directions) == -delta_m(metrics, baselines, directions)
    assert delta_m(metrics, baselines, directions) < 0 < delta_m_lower_is_better(metrics, baselines, directions)


def test_task_order_and_extra_keys_in_directions_do_not_matter():
    directions = {"b": False, "a": True, "unused": True}
    assert delta_m({"b": 2.0, "a": 3.0}, {"a": 2.0, "b": 4.0}, directions) == pytest.approx((50.0 + 50.0) / 2)


@pytest.mark.parametrize(
    "metrics, baselines, directions, error, message",
    [
        ({"a": 1.0}, {"a": 1.0, "b": 1.0}, True, ValueError, "no metric for task\\(s\\) b"),
        ({"a": 1.0, "c": 2.0}, {"a": 1.0}, True, ValueError, "no baseline for task\\(s\\) c"),
        ({"a": 1.0}, {"a": 0.0}, True, ValueError, "baseline for task 'a' is 0"),
        ({"a": 1.0}, {"a": -1.0}, True, ValueError, "baseline for task 'a' is negative"),
        ({"a": 1.0}, {"a": math.nan}, True, ValueError, "baseline for task 'a' is not finite"),
        ({"a": math.inf}, {"a": 1.0}, True, ValueError, "metric for task 'a' is not finite"),
        ({"a": 1.0}, {"a": 1.0}, {"b": True}, ValueError, "higher_is_better has no entry for task 'a'"),
        ({"a": 1.0}, {"a": 1.0}, {"a": "yes"}, TypeError, "must be a bool"),
        ({}, {}, True, ValueError, "no baselines"),
    ],
)
def test_invalid_inputs_are_clear_errors(metrics, baselines, directions, error, message):
    with pytest.raises(error, match=message):
        delta_m(metrics, baselines, directions)
