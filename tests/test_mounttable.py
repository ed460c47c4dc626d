"""picoproc.mounttable.MountTable: guest <-> host paths, longest prefix,
aliases and hidden paths, as the manifest, the file policy and the API use them."""

from __future__ import annotations

import pytest

from picoproc import api, guestview
from picoproc.backends._base import host_path_for
from picoproc.manifest import Manifest, Mount, Tmpfs
from picoproc.mounttable import MountTable, canonical, join, under

pytestmark = pytest.mark.unit

ROOT = Mount("/", "/srv/root")
USR = Mount("/usr", "/srv/usr")
USR_LOCAL = Mount("/usr/local", "/opt/local", writable=True)
LIB = Mount("/lib", "/srv/usr/lib")  # the same host files as /usr/lib
TMP = Tmpfs("/tmp", 1 << 20)


def table(**kw) -> MountTable:
    return MountTable([ROOT, USR, USR_LOCAL, LIB], [TMP], **kw)


def test_helpers():
    assert under("/usr/bin", "/usr") and under("/usr", "/usr") and under("/x", "/")
    assert not under("/usrx", "/usr") and not under("/us", "/usr")
    assert canonical("/usr/../etc//shadow/") == "/etc/shadow"
    assert canonical("usr/./bin") == "/usr/bin" and canonical("/..") == "/"
    assert join("/srv", "") == "/srv" and join("/", "a/b/") == "/a/b" and join("/srv/", "/a") == "/srv/a"


@pytest.mark.parametrize("guest,served_by,host", [
    ("/usr/local/bin/x", USR_LOCAL, "/opt/local/bin/x"),
    ("/usr/local", USR_LOCAL, "/opt/local"),
    ("/usr/localx", USR, "/srv/usr/localx"),  # whole components only
    ("/usr/bin/env", USR, "/srv/usr/bin/env"),
    ("/usr", USR, "/srv/usr"),
    ("/etc/passwd", ROOT, "/srv/root/etc/passwd"),
    ("/", ROOT, "/srv/root"),
    ("/tmp/x", TMP, None),  # a tmpfs shows no host path
])
def test_longest_prefix(guest, served_by, host):
    t = table()
    assert t.mount_of(guest) is served_by
    assert t.host_path(guest) == host


@pytest.mark.parametrize("guest,served_by,host", [
    # ".." resolved lexically first: never a host path outside the mount.
    ("/usr/local/../bin/x", USR, "/srv/usr/bin/x"),
    ("/usr/../etc/x", ROOT, "/srv/root/etc/x"),
    ("/usr/local/../../..", ROOT, "/srv/root"),
    ("/tmp/../usr/local/.", USR_LOCAL, "/opt/local"),
    # Trailing, repeated slashes and "." do not change the mount or the host path.
    ("/usr/local/", USR_LOCAL, "/opt/local"),
    ("//usr//local//bin/", USR_LOCAL, "/opt/local/bin"),
    ("/usr/./local/./x", USR_LOCAL, "/opt/local/x"),
    ("/tmp/", TMP, None),
])
def test_dotdot_and_slashes(guest, served_by, host):
    t = table()
    assert t.mount_of(guest) is served_by
    assert t.host_path(guest) == host


def test_trailing_slash_on_a_mount_point_and_no_mount():
    t = MountTable([Mount("/data/", "/srv/data/")])
    assert t.host_path("/data/x") == "/srv/data/x"
    assert t.host_path("/data") == t.host_path("/data/") == "/srv/data"
    assert [g for _, g in t.guest_paths("/srv/data/y")] == ["/data/y"]
    assert t.mount_of("/datax") is None and t.host_path("/other") is None
    assert MountTable().mount_of("/") is None
    found = t.locate("/data/a/b/")
    assert found is not None and found[1] == "a/b"


def test_aliases_of_a_host_path():
    t = table()
    # Host /srv/usr/lib/x is shown at /usr/lib/x (by /usr) and /lib/x (by /lib).
    assert [(m.guest, g) for m, g in t.guest_paths("/srv/usr/lib/x")] == [
        ("/usr", "/usr/lib/x"), ("/lib", "/lib/x")]
    # A host tree holding whole mounts: with inside=True those mounts count too.
    assert [(m.guest, g) for m, g in t.guest_paths("/srv/usr", inside=True)] == [
        ("/usr", "/usr"), ("/lib", "/lib")]
    assert t.guest_paths("/srv/usr") == [(USR, "/usr")]
    # Whole components: /srv/usrx is no alias of /srv/usr.
    assert t.guest_paths("/srv/usrx/y") == []
    # A tmpfs shows no host tree.
    assert all(m is not TMP for m, _ in t.guest_paths("/", inside=True))


def test_hidden_under_a_mount():
    t = table(hidden=("/usr/local/secret", "/etc/shadow"), hidden_names=("*.key", "id_rsa"))
    for path in ("/usr/local/secret", "/usr/local/secret/", "/usr/local/secret/a/b",
                 "/usr/local/x/../secret", "/etc//shadow", "/srv/a.key", "/home/me/.ssh/id_rsa",
                 "/d/b.key/inside"):
        assert t.is_hidden(path), path
        assert t.visible_host_path(path) is None, path
    for path in ("/usr/local/secretx", "/usr/local", "/etc/shadow.d", "/x/id_rsa.pub", "/srv/a.keys"):
        assert not t.is_hidden(path), path
        assert t.visible_host_path(path) == t.host_path(path) is not None, path
    # Hiding does not change which mount serves a path, or its host path.
    assert t.host_path("/usr/local/secret/a") == "/opt/local/secret/a"


def test_manifest_hidden_entries_get_their_aliases():
    from picoproc.manifest import check_manifest

    import os
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        usr = os.path.join(root, "usr")
        os.makedirs(os.path.join(usr, "lib", "x"))
        os.makedirs(os.path.join(usr, "deep"))
        m = check_manifest(Manifest(
            mounts=(Mount("/usr", usr), Mount("/lib", os.path.join(usr, "lib")),
                    Mount("/usr/deep", os.path.join(usr, "deep"))),
            tmpfs=(Tmpfs("/lib/x/t", 1 << 20),),
            hidden=("/usr/lib/x", "/lib/x/t/a", "/usr/deep/y")))
        # /usr/lib/x is also /lib/x; /usr/deep/y is shown by the deeper
        # /usr/deep mount, which /usr's host tree holds but does not serve
        # there: no alias.  /lib/x/t/a is taken through /lib's host tree
        # (the tmpfs over it does not count for aliases): /usr/lib/x/t/a.
        assert m.hidden == ("/usr/lib/x", "/lib/x/t/a", "/usr/deep/y", "/lib/x", "/usr/lib/x/t/a")
        assert m.is_hidden("/lib/x/f") and MountTable.of(m).is_hidden("/lib/x/f")


def test_every_user_agrees_with_the_table():
    m = Manifest(mounts=(ROOT, USR, USR_LOCAL, LIB), tmpfs=(TMP,), hidden=("/usr/local/secret",))
    t = MountTable.of(m)
    assert MountTable.of(m) is t  # kept per manifest
    for guest in ("/usr/local/bin/x", "/usr/../etc/x", "/usr/local/secret/k", "/tmp/x", "/lib/a",
                  "/usr/local/"):
        assert api.guest_to_host(m, guest) == t.visible_host_path(guest), guest
        assert guestview.mount_of(m, guest) is t.mount_of(guest), guest
        # The backends' host path counts host mounts only (a tmpfs is theirs to make).
        assert host_path_for(m, guest) == MountTable(m.mounts).host_path(guest), guest
    # A manifest built with lists (not hashable) still gets a table.
    listed = Manifest(mounts=[USR], tmpfs=[TMP])
    assert MountTable.of(listed).host_path("/usr/bin") == "/srv/usr/bin"
