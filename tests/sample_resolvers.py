"""Resolvers imported by dotted path in the tests."""

from tenantry import TenantInfo, TenantResolver

calls: list[str] = []


def from_query(request):
    calls.append("from_query")
    return request.GET.get("tenant")


def returns_int(request):
    return 42


def returns_tenant_info(request):
    return TenantInfo("acme", name="Acme Corp", settings={"theme": "dark"})


def returns_wrong_type(request):
    return {"tenant": "acme"}


not_callable = 3


class QueryResolver(TenantResolver):
    """A user resolver written in Python, usable in chains."""

    def resolve(self, request):
        calls.append("QueryResolver")
        return request.GET.get("t")


class NeverCalled(TenantResolver):
    def resolve(self, request):
        calls.append("NeverCalled")
        raise AssertionError("a later resolver ran after a match")


class BadResult(TenantResolver):
    def resolve(self, request):
        return 3.5
