"""How a request carries a tenant id to each configured resolver.

Used by the registry's rule for new tenant ids
(``tenantry.registry.new_tenant_id_problems``: refuse an id no resolver can
ever produce) and by ``tenantry.testing`` (aim a test client at a tenant). Each
step is asked with a request carrying the id the way that step reads it, so
the answer is the resolver's own, never a copy of its rules.

The other way round, :func:`what_step_read` says what a step read from a
request (``manage.py tenantry check URL`` prints it per step), and
:func:`explain_no_tenant` puts it into the DEBUG page of a request that
resolved no tenant (docs/middleware.md#tenant-not-found-while-debugging).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import DisallowedHost
from django.test import RequestFactory

from . import _core, conf
from ._core import ChainedResolver, get_tenant_resolver

__all__ = ["ANY", "Probe", "explain_no_tenant", "probe", "steps", "unreachable", "what_step_read"]

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


def steps() -> list[Any]:
    """The configured resolver's steps, in chain order."""
    resolver = get_tenant_resolver()
    return list(resolver.resolvers) if isinstance(resolver, ChainedResolver) else [resolver]


def probe(tenant_id: str, path: str = "/") -> Iterator[Probe]:
    """For each configured resolver step, in chain order: a request carrying
    ``tenant_id`` (aimed at ``path``) and what the step made of it."""
    config = conf.current()
    for step in steps():
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


def _host(request: Any) -> str:
    try:
        return request.get_host()
    except DisallowedHost:
        return request.META.get("HTTP_HOST", "")


def what_step_read(step: Any, request: Any) -> str:
    """What resolver ``step`` reads from ``request``, from the parsed config
    (empty for a resolver of the project's own)."""
    config = conf.current()
    name = type(step).__name__
    if name == "SubdomainResolver":
        return (
            f"the host {_host(request)!r} (main domain {config.main_domain!r}, "
            f"excluded {config.subdomain_exclude})"
        )
    if name == "HeaderResolver":
        header = config.header
        return f"the header {header}: {request.headers.get(header)!r}"
    if name == "PathResolver":
        return f"the path {request.path_info!r}, segment {config.path_position}"
    if name == "SessionResolver":
        key = config.session_key
        session = getattr(request, "session", None)
        value = session.get(key) if session is not None else None
        read = f"session[{key!r}] = {value!r}"
        return read if session is not None else f"{read} (the request has no session)"
    if name == "DomainResolver":
        return f"the host {_host(request)!r} against {config.domain_model}"
    return ""


def explain_no_tenant(request: Any) -> str:
    """Why ``request`` resolved no tenant, for the DEBUG 404 only (it names
    the configuration): each step and what it read, the main domain, and
    the command that explains further."""
    lines = []
    for step in steps():
        read = what_step_read(step, request)
        lines.append(f"{type(step).__name__} read {read}" if read else type(step).__name__)
    url = request.build_absolute_uri()
    return (
        f"no tenant resolved. Resolver: {'; then '.join(lines)}: no match. "
        f"TENANT_MAIN_DOMAIN is {conf.current().main_domain!r}. "
        f"Run `python manage.py tenantry check {url}` to see each step."
    )
