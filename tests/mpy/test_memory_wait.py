"""meter.memory.wait_room under MicroPython: a newcomer short of heap waits
for what a page or a publish in flight holds for a moment, bounded, one
waiter at a time; then room() decides as before."""

import asyncio
import gc
import time

from meter import memory


def _free():
    gc.collect()
    return gc.mem_free()


def test_enough_heap_returns_at_once_and_counts_nothing():
    before = dict(memory.stats)
    t0 = time.ticks_ms()
    asyncio.run(memory.wait_room(1024))
    assert time.ticks_diff(time.ticks_ms(), t0) < memory.LOOK_MS
    assert memory.stats == before


def test_waits_for_the_heap_another_task_gives_back():
    held = [bytearray(8192)]
    need = _free() + 4096  # there only once the 8 KB are given back
    waited = memory.stats["waited"]

    async def give_back():
        await asyncio.sleep_ms(2 * memory.LOOK_MS)
        assert memory._waiting  # the newcomer is still waiting
        held.clear()

    async def main():
        t = asyncio.create_task(give_back())
        await memory.wait_room(need)
        await t

    t0 = time.ticks_ms()
    asyncio.run(main())
    took = time.ticks_diff(time.ticks_ms(), t0)
    assert 2 * memory.LOOK_MS <= took < memory.WAIT_MS, took
    assert memory.room(need) and not memory._waiting
    assert memory.stats["waited"] == waited + 1


def test_gives_up_after_the_bound_and_room_refuses():
    need = _free() + 1024 * 1024
    refused = memory.stats["refused"]
    t0 = time.ticks_ms()
    asyncio.run(memory.wait_room(need))
    took = time.ticks_diff(time.ticks_ms(), t0)
    assert memory.WAIT_MS <= took < memory.WAIT_MS + 20 * memory.LOOK_MS, took
    assert not memory._waiting
    assert not memory.room(need) and memory.stats["refused"] == refused + 1


def test_one_waiter_at_a_time_the_others_are_judged_at_once():
    need = _free() + 1024 * 1024
    done = []

    async def second():
        await asyncio.sleep_ms(0)
        assert memory._waiting
        t0 = time.ticks_ms()
        await memory.wait_room(need)
        done.append(time.ticks_diff(time.ticks_ms(), t0))

    async def main():
        t = asyncio.create_task(second())
        await memory.wait_room(need)
        await t

    asyncio.run(main())
    assert done and done[0] < memory.LOOK_MS, done
