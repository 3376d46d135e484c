"""start_eagerly: a coroutine runs in the caller until it first waits, then in a task."""

from __future__ import annotations

import asyncio

import pytest

from broker.gateway.eager import start_eagerly


async def test_finishes_in_the_caller_when_it_never_waits() -> None:
    done: list[str] = []

    async def write() -> None:
        done.append("written")

    assert start_eagerly(write()) is None
    assert done == ["written"]  # before the caller yielded even once


async def test_an_error_before_any_wait_is_raised_in_the_caller() -> None:
    async def broken() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError, match="gone"):
        start_eagerly(broken())


async def test_the_rest_runs_in_a_task_after_the_first_wait() -> None:
    writable = asyncio.Event()
    steps: list[str] = []

    async def write() -> None:
        steps.append("started")
        await writable.wait()
        steps.append("resumed")
        await asyncio.sleep(0)  # a bare yield on the way
        steps.append("finished")

    task = start_eagerly(write())
    assert task is not None and steps == ["started"]
    await asyncio.sleep(0.01)
    assert steps == ["started"] and not task.done()
    writable.set()
    await asyncio.wait_for(task, 1)
    assert steps == ["started", "resumed", "finished"]


async def test_an_error_after_the_wait_is_the_task_outcome() -> None:
    later: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write() -> None:
        await later

    task = start_eagerly(write())
    assert task is not None
    later.set_exception(ConnectionError("reset"))
    with pytest.raises(ConnectionError, match="reset"):
        await asyncio.wait_for(task, 1)


async def test_cancelling_the_task_closes_the_coroutine() -> None:
    never = asyncio.Event()
    cleaned: list[bool] = []

    async def write() -> None:
        try:
            await never.wait()
        finally:
            cleaned.append(True)

    task = start_eagerly(write())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
