"""The course subscriptions as a command service (``CommandBus``), and a
short run of it: ``python -m eventfold.examples.courses [store-url]``."""

from __future__ import annotations

import asyncio
import sys

from eventfold.examples.courses import decisions
from eventfold.examples.courses.decisions import (
    ChangeCourseCapacity,
    DefineCourse,
    SubscribeStudentToCourse,
    UnsubscribeStudentFromCourse,
)
from eventfold.examples.courses.events import registry
from eventfold.serialization.codec import Codec
from eventfold.services.commands import CommandBus, Commands
from eventfold.services.outcomes import MemoryOutcomeStore
from eventfold.store.url import connect


def commands() -> Commands:
    """Every command of the application, each decided over the events of
    its course and its student."""
    found = Commands(Codec(registry))
    found.register_decision(DefineCourse, model=decisions.define_model, decide=decisions.define)
    found.register_decision(
        ChangeCourseCapacity, model=decisions.capacity_model, decide=decisions.change_capacity
    )
    found.register_decision(
        SubscribeStudentToCourse, model=decisions.subscribe_model, decide=decisions.subscribe
    )
    found.register_decision(
        UnsubscribeStudentFromCourse,
        model=decisions.unsubscribe_model,
        decide=decisions.unsubscribe,
    )
    return found


async def run(url: str) -> dict[str, int]:
    """Define a course for 3, let 10 students race for it, and let one
    student try a sixth course: the outcomes counted by status."""
    async with connect(url) as store:
        bus = CommandBus(commands(), store, MemoryOutcomeStore(), max_retries=20)

        async def send(name: str, command: object) -> str:
            outcome = await bus.execute(bus.prepare(name, command))
            return outcome.status

        await send("DefineCourse", DefineCourse("algebra", 3))
        race = await asyncio.gather(
            *(
                send("SubscribeStudentToCourse", SubscribeStudentToCourse("algebra", f"s{i}"))
                for i in range(10)
            )
        )
        for c in range(6):
            await send("DefineCourse", DefineCourse(f"course-{c}", 10))
        limit = [
            await send("SubscribeStudentToCourse", SubscribeStudentToCourse(f"course-{c}", "ana"))
            for c in range(6)
        ]
        return {
            "algebra subscribed": race.count("succeeded"),
            "algebra turned away": race.count("rejected"),
            "ana subscribed": limit.count("succeeded"),
            "ana turned away": limit.count("rejected"),
        }


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "memory://"
    for what, count in asyncio.run(run(url)).items():
        print(f"{what}: {count}")


if __name__ == "__main__":
    main()
