import copy
import pickle

import pytest
from django.template import Context, Template

from tenantry import InvalidTenantId, TenantInfo
from tenantry._core import is_valid_tenant_id, validate_tenant_id


def test_defaults_and_repr():
    t = TenantInfo("acme")
    assert t.id == "acme"
    assert t.name == "acme"
    assert t.settings == {} and t.metadata == {}
    assert t.raw is None
    assert str(t) == "acme"
    assert repr(TenantInfo("acme", "Acme Corp")) == "TenantInfo(id='acme', name='Acme Corp')"


def test_settings_dicts_are_fresh_per_instance():
    a, b = TenantInfo("a"), TenantInfo("b")
    a.settings["x"] = 1
    assert b.settings == {}
    empty = {}
    c = TenantInfo("c", settings=empty)
    assert c.settings is not empty


def test_equality_and_hash_follow_the_id():
    assert TenantInfo("a") == TenantInfo("a", name="other")
    assert TenantInfo("a") == "a"
    assert "a" == TenantInfo("a")
    assert TenantInfo("a") != "b"
    assert TenantInfo("a") != 1
    assert hash(TenantInfo("a")) == hash("a")
    assert {TenantInfo("a"): 1}["a"] == 1
    assert {"a": 1}[TenantInfo("a")] == 1
    assert len({TenantInfo("a"), TenantInfo("a"), "a"}) == 1


def test_always_truthy():
    assert bool(TenantInfo("0"))


def test_get_setting():
    t = TenantInfo("a", settings={"theme": "dark"})
    assert t.get_setting("theme") == "dark"
    assert t.get_setting("missing") is None
    assert t.get_setting("missing", "light") == "light"
    assert TenantInfo("b").get_setting("theme", 3) == 3


def test_raw_is_read_only():
    marker = object()
    t = TenantInfo("a", raw=marker)
    assert t.raw is marker
    with pytest.raises(AttributeError):
        t.raw = None


def test_pickle_copy_deepcopy():
    t = TenantInfo("acme", "Acme", settings={"theme": "dark"}, metadata={"plan": "pro"}, raw=[1])
    for clone in (pickle.loads(pickle.dumps(t)), copy.copy(t), copy.deepcopy(t)):
        assert clone == t
        assert clone.name == "Acme"
        assert clone.settings == {"theme": "dark"}
        assert clone.metadata == {"plan": "pro"}
        assert clone.raw == [1]
    deep = copy.deepcopy(t)
    deep.settings["theme"] = "light"
    assert t.settings["theme"] == "dark"


def test_template_access():
    t = TenantInfo("acme", "Acme Corp", settings={"theme": "dark"})
    out = Template("{{ tenant.id }}|{{ tenant.name }}|{{ tenant.settings.theme }}").render(
        Context({"tenant": t})
    )
    assert out == "acme|Acme Corp|dark"


def test_ints_become_strings():
    assert TenantInfo(42).id == "42"
    assert validate_tenant_id(7) == "7"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a:b",
        "a{b}",
        "a*",
        " acme",
        "acme ",
        "a\nb",
        ".a",
        "-a",
        "a" * 129,
        "é",
        "a/b",
        True,
        1.5,
        None,
        b"acme",
        ["a"],
        -1,
    ],
)
def test_invalid_ids_are_refused_everywhere(bad):
    with pytest.raises(InvalidTenantId):
        TenantInfo(bad)
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(bad)
    assert not is_valid_tenant_id(bad)


def test_invalid_tenant_id_is_a_value_error_with_a_clear_message():
    with pytest.raises(ValueError) as exc:
        TenantInfo("a:b")
    assert "':'" in str(exc.value) and "position 1" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        TenantInfo("x" * 10_000)
    assert "10000 characters" in str(exc.value)
    assert len(str(exc.value)) < 200


def test_name_and_settings_are_assignable_but_id_is_not():
    t = TenantInfo("a")
    t.name = "Alpha"
    t.settings = {"k": 1}
    assert t.name == "Alpha" and t.get_setting("k") == 1
    with pytest.raises(AttributeError):
        t.id = "b"
