"""Every actor module, loaded onto the process's broker.

Actor modules declare their actors at import with ``@dramatiq.actor(actor_name="x.verb",
queue_name=..., work_kind=...)``, which binds to the global broker: import them only through
:func:`load_actors`, after ``build_broker`` (which sets that broker).
"""

from __future__ import annotations

import importlib

import dramatiq

# Add a module here when it declares actors.
ACTOR_MODULES = (
    "workers.maintenance",
    "workers.nodes",
    "workers.deploys",
    "workers.acme",
    "workers.reschedule",
    "workers.stacks",
)


def load_actors(broker: dramatiq.Broker | None = None) -> dict[str, dramatiq.Actor[..., object]]:
    """Import every actor module and declare its actors on ``broker`` (default: the global one).

    A process that builds a second broker (tests, a restarted embedded master) gets the same
    actor objects re-declared on it, since a module is imported only once.
    """
    if broker is None:
        broker = dramatiq.get_broker()
    else:
        dramatiq.set_broker(broker)
    actors: dict[str, dramatiq.Actor[..., object]] = {}
    for name in ACTOR_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, dramatiq.Actor):
                if value.broker is not broker:
                    value.broker = broker
                    broker.declare_actor(value)
                actors[value.actor_name] = value
    return actors
