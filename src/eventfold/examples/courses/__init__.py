"""Course subscriptions over dynamic consistency boundaries: a course's
capacity and a student's course limit checked in one decision, with no
stream that holds both (``python -m eventfold.examples.courses``)."""
