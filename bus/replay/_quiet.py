"""What replay watches to know a step is over: the tasks that could run, and the database
connections in use (the broker's own state is the third fact, `MemoryBroker.idle`).

Tasks: while a replay runs, its event loop creates tasks through a task factory
(`loop.set_task_factory`, public asyncio API) that remembers, for each task, the future its
coroutine last handed to the task to wait on. A task is *able to run* when that future is done
(its wake-up is scheduled), when it yielded nothing (`asyncio.sleep(0)`), or when it has not
started or just finished (its done callbacks are scheduled). Reading this takes nothing
private from the loop, so it works on any asyncio loop, uvloop included.

Connections: a unit of work or an outbox pass holds a connection of a watched engine from
checkout to checkin, possibly while it waits on SQLite's thread; that is work in flight too.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

TaskFactory = Callable[..., "asyncio.Future[Any]"]
T = TypeVar("T")


class _Traced(Coroutine[Any, Any, Any]):
    """A task's coroutine, and what it waits on: the future it last yielded (None: nothing to
    wait for, it can run)."""

    __slots__ = ("__qualname__", "coro", "task", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any]) -> None:
        self.coro = coro
        self.task: asyncio.Future[Any] | None = None
        self.waiting: asyncio.Future[Any] | None = None
        # What asyncio shows of a task (repr, get_stack) is read from here: the wrapped one's.
        self.__qualname__ = str(getattr(coro, "__qualname__", type(coro).__name__))

    def send(self, value: Any) -> Any:
        try:
            result = self.coro.send(value)
        except BaseException:
            self.waiting = None  # finished: its done callbacks are about to run
            raise
        self.waiting = result if asyncio.isfuture(result) else None
        return result

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        try:
            result = self.coro.throw(typ) if val is None else self.coro.throw(typ, val, tb)
        except BaseException:
            self.waiting = None
            raise
        self.waiting = result if asyncio.isfuture(result) else None
        return result

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        return self.coro.__await__() if isinstance(self.coro, Coroutine) else self.coro

    @property
    def cr_code(self) -> CodeType | None:
        return getattr(self.coro, "cr_code", None) or getattr(self.coro, "gi_code", None)

    @property
    def cr_frame(self) -> FrameType | None:
        return getattr(self.coro, "cr_frame", None) or getattr(self.coro, "gi_frame", None)

    @property
    def cr_running(self) -> bool:
        return bool(
            getattr(self.coro, "cr_running", False) or getattr(self.coro, "gi_running", False)
        )


class Activity:
    """The tasks of one event loop created while at least one replay runs on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tasks: dict[asyncio.Future[Any], _Traced] = {}
        self._traced: list[_Traced] = []  # the same, for the scan on every replay step
        self.users = 0
        # Another factory set before the replay started keeps making the tasks; we wrap them.
        self._previous: TaskFactory | None = loop.get_task_factory()
        loop.set_task_factory(self._create)

    def _create(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Generator[Any, None, T] | Coroutine[Any, Any, T],
        /,
        **kwargs: Any,
    ) -> asyncio.Future[T]:
        traced = _Traced(coro)
        previous = self._previous
        task: asyncio.Future[T]
        if previous is not None:
            task = previous(loop, traced, **kwargs)
        else:
            task = asyncio.Task(traced, loop=loop, **kwargs)
        traced.task = task
        self.tasks[task] = traced
        self._traced.append(traced)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Future[Any]) -> None:
        traced = self.tasks.pop(task, None)
        if traced is not None:
            self._traced.remove(traced)

    def any_runnable(self) -> bool:
        """True when a task (other than the caller's) can run now."""
        for traced in self._traced:
            waiting = traced.waiting
            if (waiting is None or waiting.done()) and traced.task is not asyncio.current_task(
                self.loop
            ):
                return True
        return False

    def runnable(self) -> list[str]:
        """The tasks that can run now, by name and coroutine (for error messages)."""
        current = asyncio.current_task(self.loop)
        return [
            f"{task.get_name() if isinstance(task, asyncio.Task) else task!r} "
            f"({traced.__qualname__})"
            for task, traced in self.tasks.items()
            if (traced.waiting is None or traced.waiting.done()) and task is not current
        ]

    def close(self) -> None:
        """Stop tracing new tasks (tasks traced so far run on, wrapped)."""
        if self.loop.get_task_factory() == self._create:
            self.loop.set_task_factory(self._previous)


_activities: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Activity] = (
    weakref.WeakKeyDictionary()
)


def watch_tasks() -> Activity:
    """The running loop's `Activity`, traced from now on; `unwatch_tasks` when done with it."""
    loop = asyncio.get_running_loop()
    activity = _activities.get(loop)
    if activity is None:
        activity = _activities[loop] = Activity(loop)
    activity.users += 1
    return activity


def unwatch_tasks(activity: Activity) -> None:
    activity.users -= 1
    if activity.users == 0:
        activity.close()
        if _activities.get(activity.loop) is activity:
            del _activities[activity.loop]


@dataclass(slots=True)
class Connections:
    """Checked-out connections of the watched engines; `wait()` until one comes back."""

    checked_out: int = 0
    engines: list[AsyncEngine] = field(default_factory=list)
    waiter: asyncio.Future[None] | None = None

    def watch(self, engine: AsyncEngine) -> None:
        sa_event.listen(engine.sync_engine, "checkout", self._checkout)
        sa_event.listen(engine.sync_engine, "checkin", self._checkin)
        self.engines.append(engine)

    def _checkout(self, *_: Any) -> None:
        self.checked_out += 1

    def _checkin(self, *_: Any) -> None:
        self.checked_out -= 1
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    async def wait(self, timeout_s: float) -> None:
        """Sleep in the selector until a connection is checked in (or `timeout_s`): spinning
        would fight SQLite's thread for the GIL."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            pass
        finally:
            self.waiter = None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
