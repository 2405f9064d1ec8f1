"""Runs of one executor waiting for each other's table: who holds it here, and the wake-up when it lets go."""

from __future__ import annotations

import asyncio

from services.executor.active import LocalWriters


async def test_a_run_here_sees_the_other_holder_and_wakes_when_it_lets_go() -> None:
    here = LocalWriters()
    here.took("table_a", "1.1")
    assert here.other_holder("table_a", "1.1") is None  # its own hold is no other's
    held = here.other_holder("table_a", "2.1")
    assert held is not None and held[0] == "1.1"
    waiter = asyncio.create_task(held[1].wait())
    await asyncio.sleep(0)
    here.let_go({"table_a"}, "1.1")
    await asyncio.wait_for(waiter, timeout=1)
    assert here.other_holder("table_a", "2.1") is None


async def test_letting_go_of_a_table_another_run_took_meanwhile_keeps_that_runs_hold() -> None:
    here = LocalWriters()
    here.took("table_a", "1.1")
    first = here.other_holder("table_a", "3.1")
    here.took("table_a", "2.1")  # the lock went to run 2 (run 1 lost it): run 1's waiters look again
    assert first is not None and first[1].is_set()
    here.let_go({"table_a"}, "1.1")
    held = here.other_holder("table_a", "3.1")
    assert held is not None and held[0] == "2.1" and not held[1].is_set()
