"""A small service with personal data, for the tenancy and compliance
tests: customers register with a name and an email (personal fields,
encrypted per customer), a read model lists them, a state view folds them.

    eventfold serve --app tests.customers_app:service
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from eventfold import Codec, CommandRejected, Decider, Envelope, EventRegistry
from eventfold.services import Commands, Queries, ServiceDefinition
from eventfold.subscriptions import Projection, Tx

registry = EventRegistry()

CustomerId = Annotated[str, msgspec.Meta(pattern=r"^customer-[a-z0-9-]{1,40}$")]


@registry.register("CustomerRegistered", personal=("name", "email"), subject="customer_id")
class CustomerRegistered(msgspec.Struct, frozen=True):
    customer_id: str
    name: str
    email: str


class RegisterCustomer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Register a customer (name and email are personal data)."""

    customer_id: CustomerId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=200)]


class Customer(msgspec.Struct, frozen=True):
    customer_id: str = ""
    name: str = ""
    email: str = ""


def decide(command: RegisterCustomer, state: Customer) -> list[CustomerRegistered]:
    if state.customer_id:
        raise CommandRejected(f"{command.customer_id} is registered already")
    return [CustomerRegistered(command.customer_id, command.name, command.email)]


def evolve(state: Customer, event: CustomerRegistered) -> Customer:
    return Customer(event.customer_id, event.name, event.email)


customers = Decider(decide=decide, evolve=evolve, initial_state=Customer)
codec = Codec(registry)

directory = Projection(
    "customers",
    version=1,
    categories=["customer"],
    tables={"customers": "customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL"},
)


@directory.on(CustomerRegistered)
def registered(tx: Tx, env: Envelope[CustomerRegistered]) -> None:
    e = env.event
    tx.execute(
        "INSERT INTO {customers} (customer_id, name, email) VALUES (?, ?, ?)",
        (e.customer_id, e.name, e.email),
    )


commands = Commands(codec)
commands.register(RegisterCustomer, customers, stream=lambda c: c.customer_id)
queries = Queries()
queries.add(
    "customer",
    "customers",
    "SELECT customer_id, name, email FROM {customers} WHERE customer_id = ?",
    params={"customer_id": str},
)
queries.add("all_customers", "customers", "SELECT customer_id FROM {customers} ORDER BY 1")
queries.state("customer", customers)

service = ServiceDefinition(
    codec, commands=commands, projections=[directory], queries=queries, title="customers"
)
