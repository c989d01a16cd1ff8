"""The events of course subscriptions, each stored with the tags of the
course and the student it concerns."""

from __future__ import annotations

import msgspec

from eventfold.domain.events import EventRegistry

registry = EventRegistry()


@registry.register("CourseDefined", tags=lambda e: [f"course:{e.course_id}"])
class CourseDefined(msgspec.Struct, frozen=True):
    course_id: str
    capacity: int


@registry.register("CourseCapacityChanged", tags=lambda e: [f"course:{e.course_id}"])
class CourseCapacityChanged(msgspec.Struct, frozen=True):
    course_id: str
    capacity: int


@registry.register(
    "StudentSubscribedToCourse",
    tags=lambda e: [f"course:{e.course_id}", f"student:{e.student_id}"],
)
class StudentSubscribedToCourse(msgspec.Struct, frozen=True):
    course_id: str
    student_id: str


@registry.register(
    "StudentUnsubscribedFromCourse",
    tags=lambda e: [f"course:{e.course_id}", f"student:{e.student_id}"],
)
class StudentUnsubscribedFromCourse(msgspec.Struct, frozen=True):
    course_id: str
    student_id: str
