"""The loop-lag monitor: a loop that stays behind is measured behind; one stall that is over is not."""

import asyncio
import time

from service.ops.loop_lag import OUTLIERS, WINDOW, LagWindow, LoopLag


def test_a_single_stall_does_not_move_the_figure() -> None:
    """A cold first request stalled the loop once and the time-weighted mean refused the next requests."""
    window = LagWindow()
    for _ in range(WINDOW):
        window.add(0.0005)
    assert window.add(0.400) < 0.001
    for _ in range(WINDOW - 1):
        window.add(0.0005)
    assert window.value < 0.001


def test_a_loop_that_stays_behind_shows_within_a_few_ticks() -> None:
    window = LagWindow()
    for _ in range(WINDOW):
        window.add(0.0005)
    for _ in range(OUTLIERS + 3):
        window.add(0.050)
    assert window.value > 0.015
    for _ in range(WINDOW):
        window.add(0.050)
    assert abs(window.value - 0.050) < 1e-9


async def test_the_monitor_measures_a_loop_kept_busy() -> None:
    lag = LoopLag(interval=0.01)
    lag.start()
    try:
        await asyncio.sleep(0.2)
        idle = lag.seconds
        deadline = time.perf_counter() + 1.2
        while time.perf_counter() < deadline:  # every step holds the loop for 30 ms, as a saturated one does
            time.sleep(0.03)  # noqa: ASYNC251 (holding the loop is the point)
            await asyncio.sleep(0)
        busy = lag.seconds
    finally:
        lag.stop()
    assert busy > 0.015 > idle
