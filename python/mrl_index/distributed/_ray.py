"""Ray, imported on first use: the rest of the package never needs it."""

from __future__ import annotations

from typing import Any, Optional, Tuple


def ray_module() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mrl_index.distributed needs Ray: pip install 'ray>=2.9' "
            "('ray[serve]>=2.9' for the HTTP deployment)"
        ) from e
    return ray


def connect(address: Optional[str], num_cpus: Optional[int] = None) -> Tuple[Any, bool]:
    """Connects to the Ray cluster at ``address``, or starts a local one on this machine
    when ``address`` is None (``num_cpus``: its CPUs; default all). Returns ``(ray, started)``;
    ``started`` tells the caller it owns the cluster and should ``ray.shutdown()`` it. A
    process that is already connected keeps its connection."""
    ray = ray_module()
    if ray.is_initialized():
        return ray, False
    if address is None:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=True,
        )
    else:
        ray.init(address=address, logging_level="WARNING")
    return ray, True


def largest_node(ray: Any, resource: str) -> float:
    """The most of ``resource`` (``"CPU"``, ``"memory"``) that one alive node offers: a task
    asking for more would wait forever, so callers check first."""
    best = 0.0
    for node in ray.nodes():
        if node.get("Alive"):
            best = max(best, float(node.get("Resources", {}).get(resource, 0.0)))
    return best


def cause_of(error: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, unwrapped from Ray's ``RayTaskError``."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error
