"""A tiny kopf operator for the lifecycle test: handlers, a status patch, a finalizer.

It logs in from $KUBECONFIG (read when kopf logs in, not when `kubernetes` is imported) and
keeps the watch timeouts short so that a stopping operator does not linger.
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP, VERSION, PLURAL = "sloscale.dev", "v1alpha1", "inferenceservices"


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.posting.level = 20


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(body: Any, spec: Any, patch: Any, logger: Any, **_: Any) -> None:
    patch.status["observedGeneration"] = 1
    patch.status["replicas"] = {"desired": spec["replicas"]["min"]}
    logger.info("created with max %s", spec["replicas"]["max"])
    kopf.info(body, reason="Created", message=f"created with max {spec['replicas']['max']}")


@kopf.on.update(GROUP, VERSION, PLURAL)
def updated(spec: Any, meta: Any, patch: Any, **_: Any) -> None:
    patch.status["observedGeneration"] = meta["generation"]
    patch.status["replicas"] = {"desired": spec["replicas"]["max"]}


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(body: Any, name: str, logger: Any, **_: Any) -> None:
    logger.info("cleaned up %s", name)
    kopf.info(body, reason="CleanedUp", message=f"cleaned up {name}")
