"""Tenant group names on channels_redis (docs/broadcasts.md,
docs/deployment.md#the-channel-layer): for every valid tenant id and every
room or group name, the names tenantry gives channels are accepted by both
Redis layers, and a message sent to one reaches its members on a real
Redis and no other tenant's."""

from __future__ import annotations

import asyncio

from channels.layers import BaseChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantry import InvalidTenantId
from tenantry.channels import presence_group, tenant_group

#: The tenant id grammar (docs/tenants.md): 1-128 of ``A-Z a-z 0-9 . _ -``,
#: not starting with ``.`` or ``-``.
TENANT_IDS = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
#: channels' own rules, and channels_redis' core layer, which applies them.
#: (``RedisPubSubChannelLayer`` checks no name: it subscribes to
#: ``<prefix>__group__<name>``, which Redis takes whatever it holds; the
#: round trip below runs on it too.)
LAYERS = [BaseChannelLayer(), RedisChannelLayer()]


@settings(max_examples=300, deadline=None)
@given(tenant=TENANT_IDS, room=st.text(min_size=0, max_size=300))
def test_every_tenants_presence_group_is_a_valid_group_name(tenant, room):
    group = presence_group(room, tenant)
    for layer in LAYERS:
        assert layer.require_valid_group_name(group)
    assert group == presence_group(room, tenant)
    assert presence_group(room, tenant + "x") != group


@settings(max_examples=300, deadline=None)
@given(tenant=TENANT_IDS, other=TENANT_IDS, name=st.text(min_size=1, max_size=300))
def test_every_tenants_group_is_valid_and_its_own(tenant, other, name):
    group = tenant_group(name, tenant)
    for layer in LAYERS:
        assert layer.require_valid_group_name(group)
    if other != tenant:
        assert tenant_group(name, other) != group


def test_an_id_outside_the_grammar_names_no_group():
    for bad in ("", "-x", ".x", "a:b", "a{b}", "x" * 129, "é"):
        try:
            tenant_group("chat", bad)
        except InvalidTenantId:
            continue
        raise AssertionError(f"{bad!r} named a group")


def test_groups_of_the_longest_ids_deliver_on_real_redis(redis_server):
    """The longest ids (whose group names are hashed) and a short one, on
    both layers against a real Redis: each member gets its own tenant's
    message, never another's."""
    hosts = [{"address": redis_server.url, "socket_timeout": 15}]
    tenants = ["a" * 128, "a" * 127 + "b", "_" + "9" * 127, "t"]

    async def run(layer) -> None:
        channels = {t: await layer.new_channel() for t in tenants}
        for tenant, channel in channels.items():
            await layer.group_add(presence_group("room:lobby", tenant), channel)
        if isinstance(layer, RedisPubSubChannelLayer):
            await asyncio.sleep(0.2)  # subscriptions are asynchronous there
        for tenant in tenants:
            await layer.group_send(
                presence_group("room:lobby", tenant), {"type": "x", "tenant": tenant}
            )
        for tenant, channel in channels.items():
            message = await asyncio.wait_for(layer.receive(channel), 10)
            assert message["tenant"] == tenant
        for channel in channels.values():
            try:
                extra = await asyncio.wait_for(layer.receive(channel), 0.3)
            except asyncio.TimeoutError:
                continue
            raise AssertionError(f"a second message: {extra}")
        await layer.flush()

    for kind in (RedisChannelLayer, RedisPubSubChannelLayer):
        asyncio.run(run(kind(hosts=hosts, prefix="fleet-groups")))
