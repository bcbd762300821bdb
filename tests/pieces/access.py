"""The membership check of the admin tests: staff named ``<tenant>_...``
belong to that tenant; superusers to every tenant."""


def is_member(user, tenant) -> bool:
    return user.is_superuser or user.username.split("_")[0] == tenant.id
