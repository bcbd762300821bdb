"""Host handling agrees with Django's own ``HttpRequest.get_host()``.

Rust reimplements Django's ``split_domain_port`` + ``validate_host`` for speed;
over 100,000 generated hosts (ports, IPv6, IDN and punycode, uppercase,
trailing dots, underscores, empty labels, X-Forwarded-Host lists, very long
names, Unicode that lowercases to ASCII) and several ALLOWED_HOSTS lists, the
two must never disagree.
"""

import random
import sys

import pytest
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.request import split_domain_port

from tenantry import _core, resolve_tenant

ALLOWED_LISTS = [
    ([".example.com"], False),
    (["example.com", "acme.example.com", "[::1]", "127.0.0.1"], False),
    (["*"], False),
    ([], True),
    ([".EXAMPLE.com", "xn--bcher-kva.example", ".localhost"], False),
    ([".k.example"], False),
]

LABEL_PIECES = [
    "acme",
    "ACME",
    "www",
    "a",
    "b-c",
    "-x",
    "x-",
    "_u",
    "9",
    "0",
    "xn--bcher-kva",
    "xn--",
    "é",
    "\u212a",
    "\u0130",
    "ß",
    "ｆｕｌｌ",
    "٣",
    "",
    " ",
    "\t",
    "@",
    ",",
    "*",
    "localhost",
    "k",
    "example",
    "EXAMPLE",
    "com",
    "evilexample",
    "a" * 63,
    "b" * 64,
]
TAILS = ["", ".", "..", ":80", ":8000", ":", ":0x1", ":٣", ":80:81", "\n", " ", ":65536", ":00"]
IPV6 = [
    "[::1]",
    "[::]",
    "[2001:db8::1]",
    "[::ffff:127.0.0.1]",
    "[a:b]",
    "[:]",
    "[g::1]",
    "[::1",
    "::1",
    "[1.2:3]",
    "[A::B]",
    "[::1]]",
]


def generated_hosts(n, seed=1234):
    rng = random.Random(seed)
    for i in range(n):
        kind = i % 10
        if kind == 0:
            yield rng.choice(IPV6) + rng.choice(TAILS)
        elif kind == 1:
            yield ",".join(
                ".".join(rng.choice(LABEL_PIECES) for _ in range(rng.randint(1, 4)))
                for _ in range(2)
            )
        elif kind == 2:
            yield "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 12)))
        elif kind == 3:
            yield ".".join(rng.choice(["a", "b"]) * rng.randint(1, 300) for _ in range(3))
        else:
            labels = [rng.choice(LABEL_PIECES) for _ in range(rng.randint(1, 5))]
            if rng.random() < 0.5:
                labels += ["example", "com"]
            yield ".".join(labels) + rng.choice(TAILS)


def django_verdict(host):
    """The domain Django's get_host() accepts, or None where it raises."""
    request = HttpRequest()
    request.META = {"HTTP_HOST": host, "SERVER_NAME": "x", "SERVER_PORT": "80"}
    try:
        return split_domain_port(request.get_host())[0]
    except DisallowedHost:
        return None


def test_only_the_kelvin_sign_lowercases_to_ascii():
    """The Rust side relies on this fact about Python's str.lower()."""
    found = [
        cp for cp in range(0x80, sys.maxunicode + 1) if all(ord(c) < 0x80 for c in chr(cp).lower())
    ]
    assert found == [0x212A]


@pytest.mark.parametrize("allowed, debug", ALLOWED_LISTS)
def test_rust_host_check_agrees_with_django(allowed, debug, settings):
    settings.ALLOWED_HOSTS = allowed
    settings.DEBUG = debug
    disagreements = []
    hosts = list(generated_hosts(100_000 // len(ALLOWED_LISTS) + 1, seed=len(allowed)))
    for host in hosts:
        theirs = django_verdict(host)
        ours = _core._django_host(host, allowed, debug)
        if theirs != ours:
            disagreements.append((host, theirs, ours))
    assert disagreements == [], disagreements[:20]


def test_at_least_100000_hosts_are_compared():
    assert sum(100_000 // len(ALLOWED_LISTS) + 1 for _ in ALLOWED_LISTS) >= 100_000


def test_end_to_end_resolution_raises_exactly_when_django_does(settings, tenant_config, rf):
    """Through resolve_tenant(): DisallowedHost exactly when get_host() raises,
    and otherwise the tenant is the first label of Django's domain."""
    tenant_config(TENANT_MAIN_DOMAIN="example.com")
    settings.ALLOWED_HOSTS = [".example.com", "[::1]"]
    settings.USE_X_FORWARDED_HOST = True
    mismatches = []
    for i, host in enumerate(generated_hosts(20_000, seed=99)):
        request = rf.get("/")
        key = "HTTP_X_FORWARDED_HOST" if i % 2 else "HTTP_HOST"
        request.META[key] = host
        try:
            domain = split_domain_port(request.get_host())[0]
        except DisallowedHost:
            domain = None
        try:
            tenant = resolve_tenant(request)
            raised = False
        except DisallowedHost:
            tenant, raised = None, True
        if raised != (domain is None):
            mismatches.append((host, domain, "raised" if raised else tenant))
            continue
        if domain is not None:
            sub = domain.removesuffix(".example.com")
            expected = (
                sub
                if sub != domain
                and sub
                and "." not in sub
                and sub not in ("www", "api", "admin")
                and not sub.startswith("-")
                and len(sub) <= 128
                else None
            )
            got = None if tenant is None else tenant.id
            if got != expected:
                mismatches.append((host, domain, got))
    assert mismatches == [], mismatches[:20]
