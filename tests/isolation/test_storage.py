"""tenantry.storage: each tenant's files under tenants/<id>/, names that
would leave that folder refused, no tenant → TenantNotSetError; on the file
system and on another storage class through TenantStorageMixin."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, storages

from tenantry import TenantNotSetError, tenant_context
from tenantry.storage import TenantFileSystemStorage, TenantStorageMixin
from tests.demo_pieces import demo_results
from tests.doc_blocks import block_defining


class TenantMemoryStorage(TenantStorageMixin, InMemoryStorage):
    pass


@pytest.fixture
def fs(tmp_path):
    return TenantFileSystemStorage(location=tmp_path, base_url="/media/")


@pytest.fixture(params=["filesystem", "memory"])
def storage(request, tmp_path):
    if request.param == "memory":
        return TenantMemoryStorage(base_url="/media/")
    return TenantFileSystemStorage(location=tmp_path, base_url="/media/")


def test_each_tenant_has_its_own_folder(storage):
    with tenant_context("acme"):
        name = storage.save("logos/logo.png", ContentFile(b"acme-logo"))
        assert name == "logos/logo.png"  # what a FileField stores: relative to the tenant
        assert storage.exists(name) and storage.size(name) == 9
        assert storage.url(name) == "/media/tenants/acme/logos/logo.png"
        assert storage.listdir("logos") == ([], ["logo.png"])
        assert storage.listdir("") == (["logos"], [])
    with tenant_context("globex"):
        assert not storage.exists("logos/logo.png")
        assert storage.listdir("") == ([], [])  # no file yet
        storage.save("logos/logo.png", ContentFile(b"globex"))
        with storage.open("logos/logo.png") as f:
            assert f.read() == b"globex"
    with tenant_context("acme"):
        with storage.open("logos/logo.png") as f:
            assert f.read() == b"acme-logo"
        again = storage.save("logos/logo.png", ContentFile(b"second"))
        assert again.startswith("logos/logo_") and again != name  # an available name
        storage.delete(name)
        assert not storage.exists(name)
    with tenant_context("globex"):
        assert storage.exists("logos/logo.png")


def test_files_land_under_tenants_id(fs, tmp_path):
    with tenant_context("acme"):
        fs.save("a/b.txt", ContentFile(b"x"))
        assert fs.path("a/b.txt") == str(tmp_path / "tenants" / "acme" / "a" / "b.txt")
    assert (tmp_path / "tenants" / "acme" / "a" / "b.txt").read_bytes() == b"x"


CALLS = {
    "save": lambda s, n: s.save(n, ContentFile(b"x")),
    "open": lambda s, n: s.open(n),
    "exists": lambda s, n: s.exists(n),
    "delete": lambda s, n: s.delete(n),
    "size": lambda s, n: s.size(n),
    "url": lambda s, n: s.url(n),
    "listdir": lambda s, n: s.listdir(n),
    "get_modified_time": lambda s, n: s.get_modified_time(n),
    "get_available_name": lambda s, n: s.get_available_name(n),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_no_tenant_is_an_error(storage, call):
    with pytest.raises(TenantNotSetError, match="no tenant is bound"):
        CALLS[call](storage, "logo.png")


BAD_NAMES = [
    "../globex/logo.png",
    "logos/../../globex/logo.png",
    "..",
    "/etc/passwd",
    "//server/share",
    "C:/Windows/win.ini",
    "c:evil",
    "..\\globex\\logo.png",
    "logos\\..\\..\\x",
    "%2e%2e/globex/logo.png",
    "%2E%2E%2Fglobex",
    "logos%2f..%2f..%2fx",
    "%252e%252e/x",
    "logo.png\x00.txt",
    "bad\nname",
    "\uff0e\uff0e/globex/logo.png",  # fullwidth dots: ".." once NFKC-normalised
    "\u2024\u2024/x",  # one-dot leaders
]


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_leave_the_folder_are_refused(storage, call, name):
    with tenant_context("acme"), pytest.raises(SuspiciousFileOperation, match="'acme'"):
        CALLS[call](storage, name)


def test_a_refused_name_writes_nothing(fs, tmp_path):
    with tenant_context("acme"):
        fs.save("mine.txt", ContentFile(b"mine"))
        for name in BAD_NAMES:
            with pytest.raises(SuspiciousFileOperation):
                fs.save(name, ContentFile(b"evil"))
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [os.path.join("tenants", "acme", "mine.txt")]


def test_symlinks_out_of_the_folder_are_refused(fs, tmp_path):
    (tmp_path / "tenants" / "globex").mkdir(parents=True)
    (tmp_path / "tenants" / "globex" / "secret.txt").write_bytes(b"globex secret")
    (tmp_path / "tenants" / "acme").mkdir(parents=True)
    (tmp_path / "tenants" / "acme" / "shortcut").symlink_to(tmp_path / "tenants" / "globex")
    (tmp_path / "tenants" / "acme" / "passwd").symlink_to("/etc/passwd")
    with tenant_context("acme"):
        for name in ("shortcut/secret.txt", "passwd", "shortcut"):
            with pytest.raises(SuspiciousFileOperation, match="symlinks resolved"):
                fs.open(name)
        with pytest.raises(SuspiciousFileOperation):
            fs.save("shortcut/planted.txt", ContentFile(b"x"))
    assert not (tmp_path / "tenants" / "globex" / "planted.txt").exists()
    # The tenant's folder itself may not be a link to another tenant's.
    (tmp_path / "tenants" / "initech").symlink_to(tmp_path / "tenants" / "globex")
    with tenant_context("initech"), pytest.raises(SuspiciousFileOperation):
        fs.open("secret.txt")


def test_storages_setting_of_the_docs(settings, tmp_path):
    namespace: dict = {}
    exec(block_defining("storage.md", "STORAGES"), namespace)
    config = namespace["STORAGES"]
    config["default"].setdefault("OPTIONS", {})["location"] = str(tmp_path)
    settings.STORAGES = config
    default = storages["default"]
    assert isinstance(default, TenantFileSystemStorage)
    with tenant_context("acme"):
        assert default.save("hello.txt", ContentFile(b"hi")) == "hello.txt"
    assert (tmp_path / "tenants" / "acme" / "hello.txt").read_bytes() == b"hi"


def test_the_demo_keeps_each_tenants_logo_in_its_folder():
    results, _, media = demo_results()
    assert results["board_before"] is False
    assert (results["upload_acme"], results["upload_globex"]) == (302, 302)
    assert results["upload_svg"] is True  # refused: not a PNG, JPEG or GIF
    assert results["logo_acme"] == [200, "acme-png", "image/png"]
    assert results["logo_globex"] == [200, "globex-gif", "image/gif"]
    assert results["board_after"] is True  # the board page shows it
    files = sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
    assert files == [
        os.path.join("tenants", "acme", "logo.png"),
        os.path.join("tenants", "globex", "logo.gif"),
    ]


def test_other_name_forms(fs, tmp_path):
    from pathlib import PurePosixPath

    with tenant_context("acme"):
        named = ContentFile(b"x", name="from-content.txt")
        assert fs.save(None, named) == "from-content.txt"
        assert fs.exists(PurePosixPath("from-content.txt"))
        for bad in (b"bytes.txt", 42, PurePosixPath("../globex/x")):
            with pytest.raises(SuspiciousFileOperation):
                fs.open(bad)
        with pytest.raises(SuspiciousFileOperation):
            fs.save(None, ContentFile(b"x", name="../globex/evil.txt"))
    assert (tmp_path / "tenants" / "acme" / "from-content.txt").exists()
    assert not (tmp_path / "tenants" / "globex").exists()
