"""How a request carries a tenant id to each configured resolver.

Used by the registry's rule for new tenant ids
(``tenantry.registry.new_tenant_id_problems``: refuse an id no resolver can
ever produce) and by ``tenantry.testing`` (aim a test client at a tenant). Each
step is asked with a request carrying the id the way that step reads it, so
the answer is the resolver's own, never a copy of its rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import DisallowedHost
from django.test import RequestFactory

from . import _core, conf
from ._core import ChainedResolver, get_tenant_resolver

__all__ = ["ANY", "Probe", "probe", "unreachable"]

#: ``Probe.found`` of a step that can carry any id (session, JWT, user
#: attribute, custom resolver, custom domain rows).
ANY = object()


@dataclass(frozen=True)
class Probe:
    """One resolver step asked with a request carrying the id."""

    step: str  # the resolver class name
    where: str  # what carried the id, e.g. "the host 'acme.example.com'"
    path: str = "/"
    meta: dict[str, str] = field(default_factory=dict)
    #: the id the step resolved, None, ``ANY``, or the ``DisallowedHost`` raised
    found: Any = None


def probe(tenant_id: str, path: str = "/") -> Iterator[Probe]:
    """For each configured resolver step, in chain order: a request carrying
    ``tenant_id`` (aimed at ``path``) and what the step made of it."""
    resolver = get_tenant_resolver()
    steps = resolver.resolvers if isinstance(resolver, ChainedResolver) else [resolver]
    config = conf.current()
    for step in steps:
        name = type(step).__name__
        carried = _carrying(name, tenant_id, path, config)
        if carried is None:
            yield Probe(name, f"the {name}", found=ANY)
            continue
        where, request_path, meta = carried
        request = RequestFactory().get(request_path, **meta)
        try:
            found = step.resolve(request)
        except DisallowedHost as exc:
            found = exc
        yield Probe(name, where, request_path, meta, getattr(found, "id", found))


def _carrying(
    step: str, tenant_id: str, path: str, config: _core.CurrentConfig
) -> tuple[str, str, dict[str, str]] | None:
    if step == "SubdomainResolver":
        host = f"{tenant_id}.{config.main_domain or 'example.com'}"
        return f"the host {host!r}", path, {"HTTP_HOST": host}
    if step == "PathResolver":
        segments = [s for s in path.split("/") if s]
        position = config.path_position
        while len(segments) < position - 1:
            segments.append("x")
        segments.insert(position - 1, tenant_id)
        carried = "/" + "/".join(segments) + "/"
        return f"the path {carried!r}", carried, {}
    if step == "HeaderResolver":
        header = config.header
        return f"the header {header}: {tenant_id}", path, {config.header_meta_key: tenant_id}
    return None


def unreachable(tenant_id: str) -> str | None:
    """Why none of the configured resolvers can produce ``tenant_id``, or
    None when one can (each step asked by :func:`probe`)."""
    reasons = []
    for step in probe(tenant_id):
        if step.found is ANY or step.found == tenant_id:
            return None
        if isinstance(step.found, DisallowedHost):
            reasons.append(
                f"{step.where} is not a valid host (DNS labels: a-z 0-9 '-') or not allowed"
            )
        elif step.found is not None:
            reasons.append(f"{step.where} resolves to {step.found!r} (hosts are lowercase)")
        else:
            reasons.append(f"{step.where} resolves to no tenant{_excluded(step.step)}")
    return "; ".join(reasons)


def _excluded(step: str) -> str:
    config = conf.current()
    if step == "SubdomainResolver":
        return (
            f" (TENANT_SUBDOMAIN_EXCLUDE {config.subdomain_exclude}, "
            f"TENANT_SUBDOMAIN_DEPTH {config.subdomain_depth})"
        )
    if step == "PathResolver":
        return f" (TENANT_PATH_EXCLUDE {config.path_exclude})"
    return ""
