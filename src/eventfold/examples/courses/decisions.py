"""What each command reads (projections, each with its own query) and
decides. Pure: no I/O; ``eventfold.decision.decide`` runs them."""

from __future__ import annotations

from typing import Any

import msgspec

from eventfold.decision import DecisionModel, DecisionProjection, projection
from eventfold.errors import CommandRejected
from eventfold.examples.courses.events import (
    CourseCapacityChanged,
    CourseDefined,
    StudentSubscribedToCourse,
    StudentUnsubscribedFromCourse,
)
from eventfold.store.dcb import Query, QueryItem

MAX_COURSES_PER_STUDENT = 5

SUBSCRIPTIONS = ("StudentSubscribedToCourse", "StudentUnsubscribedFromCourse")


class DefineCourse(msgspec.Struct, frozen=True):
    course_id: str
    capacity: int


class ChangeCourseCapacity(msgspec.Struct, frozen=True):
    course_id: str
    capacity: int


class SubscribeStudentToCourse(msgspec.Struct, frozen=True):
    course_id: str
    student_id: str


class UnsubscribeStudentFromCourse(msgspec.Struct, frozen=True):
    course_id: str
    student_id: str


def _course(course_id: str, *types: str) -> Query:
    return Query.of(QueryItem(types=types, tags=(f"course:{course_id}",)))


def course_exists(course_id: str) -> DecisionProjection[bool]:
    return projection(
        _course(course_id, "CourseDefined"), lambda: False, CourseDefined=lambda s, e: True
    )


def course_capacity(course_id: str) -> DecisionProjection[int]:
    return projection(
        _course(course_id, "CourseDefined", "CourseCapacityChanged"),
        lambda: 0,
        CourseDefined=lambda s, e: e.capacity,
        CourseCapacityChanged=lambda s, e: e.capacity,
    )


def course_subscriptions(course_id: str) -> DecisionProjection[int]:
    """How many students the course has."""
    return projection(
        _course(course_id, *SUBSCRIPTIONS),
        lambda: 0,
        StudentSubscribedToCourse=lambda s, e: s + 1,
        StudentUnsubscribedFromCourse=lambda s, e: s - 1,
    )


def student_courses(student_id: str) -> DecisionProjection[frozenset[str]]:
    """The courses the student is subscribed to."""
    return projection(
        Query.of(QueryItem(types=SUBSCRIPTIONS, tags=(f"student:{student_id}",))),
        frozenset,
        StudentSubscribedToCourse=lambda s, e: s | {e.course_id},
        StudentUnsubscribedFromCourse=lambda s, e: s - {e.course_id},
    )


# --- the commands -------------------------------------------------------------------


def define_model(command: DefineCourse) -> DecisionModel:
    return DecisionModel(exists=course_exists(command.course_id))


def define(command: DefineCourse, states: dict[str, Any]) -> list[Any]:
    if states["exists"]:
        raise CommandRejected(f"course {command.course_id!r} already exists")
    if command.capacity < 1:
        raise CommandRejected("a course needs a capacity of at least 1")
    return [CourseDefined(command.course_id, command.capacity)]


def capacity_model(command: ChangeCourseCapacity) -> DecisionModel:
    return DecisionModel(
        exists=course_exists(command.course_id),
        capacity=course_capacity(command.course_id),
        subscriptions=course_subscriptions(command.course_id),
    )


def change_capacity(command: ChangeCourseCapacity, states: dict[str, Any]) -> list[Any]:
    if not states["exists"]:
        raise CommandRejected(f"course {command.course_id!r} does not exist")
    if command.capacity == states["capacity"]:
        return []  # nothing changes
    if command.capacity < states["subscriptions"]:
        raise CommandRejected(
            f"course {command.course_id!r} already has {states['subscriptions']} students"
        )
    return [CourseCapacityChanged(command.course_id, command.capacity)]


def subscribe_model(command: SubscribeStudentToCourse) -> DecisionModel:
    """One read, one condition: the course's definition, capacity and
    subscriptions, and the student's subscriptions."""
    return DecisionModel(
        exists=course_exists(command.course_id),
        capacity=course_capacity(command.course_id),
        subscriptions=course_subscriptions(command.course_id),
        courses=student_courses(command.student_id),
    )


def subscribe(command: SubscribeStudentToCourse, states: dict[str, Any]) -> list[Any]:
    course, student = command.course_id, command.student_id
    if not states["exists"]:
        raise CommandRejected(f"course {course!r} does not exist")
    if course in states["courses"]:
        raise CommandRejected(f"student {student!r} is already subscribed to course {course!r}")
    if states["subscriptions"] >= states["capacity"]:
        raise CommandRejected(f"course {course!r} is full")
    if len(states["courses"]) >= MAX_COURSES_PER_STUDENT:
        raise CommandRejected(
            f"student {student!r} is already subscribed to {MAX_COURSES_PER_STUDENT} courses"
        )
    return [StudentSubscribedToCourse(course, student)]


def unsubscribe_model(command: UnsubscribeStudentFromCourse) -> DecisionModel:
    return DecisionModel(courses=student_courses(command.student_id))


def unsubscribe(command: UnsubscribeStudentFromCourse, states: dict[str, Any]) -> list[Any]:
    if command.course_id not in states["courses"]:
        raise CommandRejected(
            f"student {command.student_id!r} is not subscribed to course {command.course_id!r}"
        )
    return [StudentUnsubscribedFromCourse(command.course_id, command.student_id)]
