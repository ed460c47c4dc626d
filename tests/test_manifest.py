"""The manifest: TOML schema, validation messages, the embedded default, CLI layering.

Every validation test asserts the exact key the message names, because "an
error naming the key and the reason" is the promise users rely on.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest

from picoproc import manifest as mf
from picoproc.manifest import (
    Endpoint,
    Limits,
    Manifest,
    ManifestError,
    Mount,
    Tmpfs,
    add_cli_options,
    apply_overrides,
    check_manifest,
    default_manifest,
    hidden_name_matches,
    hidden_path_matches,
    load_manifest,
    manifest_from_cli_args,
    manifest_to_toml,
    parse_duration,
    parse_manifest,
    parse_size,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def hostdirs(tmp_path):
    """Two host directories, a file and a symlink to use as mount sources."""
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "data" / "f.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    return tmp_path


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.toml", **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


# --------------------------------------------------------------------------
# Round trip of every key

FULL_MANIFEST = """
cwd = "/work/sub"
hostname = "grader-1"
hidden = ["/work/secret"]
hidden_names = ["*.pem", "id_rsa"]
pass_env = ["FROM_HOST", "NOT_ON_HOST"]

[env]
PATH = "/usr/bin:/bin"
"WITH SPACE" = "a=b c"
EMPTY = ""

[[mount]]
guest = "/work"
host = "{d}/data"
mode = "rw"
exec = false

[[mount]]
guest = "//opt/./tools/"
host = "{d}/link"

[[mount]]
guest = "/maybe"
host = "{d}/absent"
optional = true

[[tmpfs]]
guest = "/tmp"
size = "64M"

[[tmpfs]]
guest = "/scratch"
size = 4096

[[tmpfs]]
guest = "/default-size"

[net]
connect = ["127.0.0.1:8080", "[::1]:53", "10.0.0.1:*"]
listen = ["0.0.0.0:0"]
unix = ["{d}/out"]

[limits]
wall_time = "1m30s"
cpu_time = 2.5
memory = "1.5G"
pids = 64
open_files = 256
output = "16M"
"""


def test_every_key_parses_to_the_data_model(hostdirs):
    text = FULL_MANIFEST.format(d=hostdirs)
    m = parse_manifest(text, host_env={"FROM_HOST": "yes", "SECRET": "no"})
    data, link = str(hostdirs / "data"), str(hostdirs / "data")  # the symlink is resolved
    assert m.cwd == "/work/sub"
    assert m.hostname == "grader-1"
    assert m.mounts == (Mount("/work", data, writable=True, exec=False),
                        Mount("/opt/tools", link, writable=False, exec=True))
    assert m.tmpfs == (Tmpfs("/tmp", 64 << 20), Tmpfs("/scratch", 4096),
                       Tmpfs("/default-size", mf.DEFAULT_TMPFS_SIZE))
    # /opt/tools shows the same host directory as /work: the hidden entry covers both.
    assert m.hidden == ("/work/secret", "/opt/tools/secret")
    assert m.hidden_names == ("*.pem", "id_rsa")
    # pass_env copies only variables the host has, and nothing else of the host env.
    assert m.env == (("PATH", "/usr/bin:/bin"), ("WITH SPACE", "a=b c"), ("EMPTY", ""),
                     ("FROM_HOST", "yes"))
    assert m.net_connect == (Endpoint("127.0.0.1", 8080), Endpoint("::1", 53),
                             Endpoint("10.0.0.1", 0))
    assert m.net_listen == (Endpoint("0.0.0.0", 0),)
    assert m.unix_paths == (str(hostdirs / "out"),)
    assert m.limits == Limits(wall_time_s=90.0, cpu_time_s=2.5, memory_bytes=3 << 29, pids=64,
                              open_files=256, output_bytes=16 << 20)


def test_round_trip_through_toml_is_exact(hostdirs):
    m = parse_manifest(FULL_MANIFEST.format(d=hostdirs), host_env={"FROM_HOST": "yes"})
    text = manifest_to_toml(m)
    assert parse_manifest(text, host_env={}) == m
    # and the default, which uses every kind of entry too
    d = default_manifest()
    assert parse_manifest(manifest_to_toml(d), host_env={}) == d


def test_round_trip_escapes_hostile_strings(hostdirs):
    m = Manifest(
        mounts=(Mount("/quote\"back\\slash", str(hostdirs / "data")),),
        env=(("K", "line1\nline2\ttab \x01 é \U0001F600"),),
        cwd="/",
    )
    assert parse_manifest(manifest_to_toml(m), host_env={}) == m


def test_relative_host_paths_are_relative_to_the_manifest_file(hostdirs):
    (hostdirs / "m.toml").write_text('[[mount]]\nguest = "/d"\nhost = "data"\n')
    m = load_manifest(hostdirs / "m.toml")
    assert m.mounts == (Mount("/d", str(hostdirs / "data")),)


def test_host_symlink_is_resolved_at_load_time(hostdirs):
    m = parse_manifest(f'[[mount]]\nguest = "/d"\nhost = "{hostdirs}/link"\n')
    assert m.mounts[0].host == str(hostdirs / "data")
    assert not os.path.islink(m.mounts[0].host)


def test_extends_default_layers_the_file_on_the_default(hostdirs):
    m = parse_manifest(textwrap.dedent(f"""
        extends = "default"
        [[mount]]
        guest = "/usr"
        host = "{hostdirs}/data"
        [[mount]]
        guest = "/home/me/src"
        host = "{hostdirs}/out"
        mode = "rw"
        [limits]
        memory = "unlimited"
        pids = 8
    """))
    d = default_manifest()
    assert m.mounts[0] == Mount("/usr", str(hostdirs / "data"))  # replaced in place
    assert Mount("/home/me/src", str(hostdirs / "out"), writable=True) in m.mounts
    assert m.tmpfs == d.tmpfs and m.env == d.env and m.cwd == d.cwd
    assert m.limits == dataclasses.replace(d.limits, memory_bytes=None, pids=8)
    # The explicit mount lifts the default's plain "/home" entry, nothing else.
    assert "/home" not in m.hidden and set(m.hidden) == set(d.hidden) - {"/home"}
    assert m.is_hidden("/home/me/src/.ssh/id_rsa")


# --------------------------------------------------------------------------
# Validation: every error names the key and the reason

def bad_cases(d):
    """(manifest text, exact expected message) — d is an existing host dir."""
    return [
        ('[[mount]]\nguest = "/a"\nhost = "/nonexistent"',
         "m.toml: mount[0].host: /nonexistent does not exist"),
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\n[[mount]]\nguest = "/b"\nhost = "/nonexistent"',
         "m.toml: mount[1].host: /nonexistent does not exist"),
        ('[limits]\nmemory = "12Q"', 'm.toml: limits.memory: "12Q" is not a size (use e.g. 512M)'),
        ('[net]\nconnect = ["localhost:80"]',
         'm.toml: net.connect[0]: "localhost:80" needs a literal IP address '
         "(names are not resolved: the guest has no DNS of its own)"),
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\nmdoe = "ro"',
         'm.toml: mount[0].mdoe: unknown key (did you mean "mode"?)'),
        ('colour = 1', "m.toml: colour: unknown key (known keys: extends, cwd, hostname, env, "
         "pass_env, mount, tmpfs, hidden, hidden_names, net, limits)"),
        ('[limits]\nmemroy = "1G"', 'm.toml: limits.memroy: unknown key (did you mean "memory"?)'),
        ('[net]\nconect = []', 'm.toml: net.conect: unknown key (did you mean "connect"?)'),
        ('[[tmpfs]]\nguest = "/t"\nsise = "1M"', 'm.toml: tmpfs[0].sise: unknown key (did you mean "size"?)'),
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\nhidden = ["/x"]',
         "m.toml: mount[0].hidden: unknown key (hidden is a top-level key: write it above the "
         "first [table] or [[table]] header)"),
        # wrong types
        ("cwd = 5", "m.toml: cwd: expected a path string, got an integer"),
        ('[[mount]]\nguest = "/a"\nhost = 1', "m.toml: mount[0].host: expected a path string, got an integer"),
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\nexec = "yes"',
         'm.toml: mount[0].exec: expected true or false, got "yes"'),
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\nmode = "wr"',
         'm.toml: mount[0].mode: expected "ro" or "rw", got "wr"'),
        ('[mount]\nguest = "/a"', "m.toml: mount: expected an array of tables (write [[mount]], not [mount])"),
        ('mount = [1]', "m.toml: mount[0]: expected a table, got an integer"),
        ('env = ["A=1"]', "m.toml: env: expected a table ([env]), got an array"),
        ("[env]\nN = 1", 'm.toml: env.N: expected a string, got an integer (quote numbers: "1")'),
        ('hidden = "/x"', "m.toml: hidden: expected an array of guest paths, got a string"),
        ('[limits]\npids = true', "m.toml: limits.pids: expected a whole number, got a boolean"),
        ('[limits]\npids = 1.5', "m.toml: limits.pids: expected a whole number, got a float"),
        ('[limits]\nwall_time = 1979-05-27', "m.toml: limits.wall_time: expected a duration "
         '(seconds, or a string like "30s"), got a date/time'),
        ('[net]\nconnect = "127.0.0.1:1"', 'm.toml: net.connect: expected an array of "ADDRESS:PORT" strings, got a string'),
        ('[net]\nlisten = [80]', 'm.toml: net.listen[0]: expected a string "ADDRESS:PORT", got an integer'),
        # missing keys
        ('[[mount]]\nguest = "/a"', 'm.toml: mount[0]: missing the required key "host"'),
        ('[[tmpfs]]\nsize = "1M"', 'm.toml: tmpfs[0]: missing the required key "guest"'),
        # guest paths
        (f'[[mount]]\nguest = "a/b"\nhost = "{d}"',
         "m.toml: mount[0].guest: a/b is not absolute (guest paths start with /)"),
        (f'[[mount]]\nguest = "/a/../etc"\nhost = "{d}"',
         "m.toml: mount[0].guest: /a/../etc contains '..' (write the path without it)"),
        (f'[[mount]]\nguest = "/a\\u0000b"\nhost = "{d}"',
         'm.toml: mount[0].guest: "/a\\x00b" contains a NUL byte (a path cannot hold one)'),
        (f'[[mount]]\nguest = "/proc/sys"\nhost = "{d}"',
         "m.toml: mount[0].guest: /proc/sys is under /proc, which the library OS provides itself"),
        ('[[tmpfs]]\nguest = "/dev"', "m.toml: tmpfs[0].guest: /dev is under /dev, which the library OS "
                                     "provides itself (only /dev/shm may be mounted there)"),
        ('[[tmpfs]]\nguest = "/tmp"\ninodes = 0', "m.toml: tmpfs[0].inodes: must be greater than 0 (got 0)"),
        (f'[[mount]]\nguest = "/a/{"x" * 256}"\nhost = "{d}"',
         f'm.toml: mount[0].guest: "/a/{"x" * 197}..." has a component longer than 255 bytes'),
        (f'[[mount]]\nguest = "/{"x/" * 2048}"\nhost = "{d}"',
         "m.toml: mount[0].guest: path is 4097 bytes long (the limit is 4095)"),
        # duplicates, mount vs tmpfs
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\n[[mount]]\nguest = "//a/"\nhost = "{d}"',
         "m.toml: mount[1].guest: /a is already mount[0].guest"),
        (f'[[mount]]\nguest = "/a"\nhost = "{d}"\n[[tmpfs]]\nguest = "/a"',
         "m.toml: tmpfs[0].guest: /a is already mount[0].guest"),
        (f'hidden = ["/srv"]\n[[mount]]\nguest = "/srv/x"\nhost = "{d}"',
         'm.toml: mount[0].guest: /srv/x is hidden by hidden[0] ("/srv"), so the guest could never reach it'),
        # sizes
        ('[[tmpfs]]\nguest = "/t"\nsize = 0', "m.toml: tmpfs[0].size: must be greater than 0 (got 0)"),
        ('[[tmpfs]]\nguest = "/t"\nsize = -1', "m.toml: tmpfs[0].size: must be greater than 0 (got -1)"),
        ('[[tmpfs]]\nguest = "/t"\nsize = "0K"', 'm.toml: tmpfs[0].size: must be greater than 0 (got "0K")'),
        ('[limits]\noutput = "99999999T"', 'm.toml: limits.output: "99999999T" is too large (the limit is 2^63-1 bytes)'),
        ('[limits]\nwall_time = 0', "m.toml: limits.wall_time: must be greater than 0 (got 0)"),
        ('[limits]\ncpu_time = "3x"', 'm.toml: limits.cpu_time: "3x" is not a duration (use e.g. 30s, 2m, 1h30m or a number of seconds)'),
        ('[limits]\ncpu_time = inf', "m.toml: limits.cpu_time: inf is not a finite duration"),
        ('[limits]\ncpu_time = nan', "m.toml: limits.cpu_time: nan is not a finite duration"),
        ('[limits]\npids = 0', "m.toml: limits.pids: must be greater than 0 (got 0)"),
        ('[limits]\npids = 99999999', "m.toml: limits.pids: 99999999 is more than the maximum 4194304"),
        ('[limits]\nopen_files = 2000000', "m.toml: limits.open_files: 2000000 is more than the maximum 1048576"),
        # network
        ('[net]\nlisten = ["127.0.0.1:65536"]', 'm.toml: net.listen[0]: "127.0.0.1:65536": port 65536 is out of range 0..65535'),
        ('[net]\nlisten = ["127.0.0.1:-1"]', 'm.toml: net.listen[0]: "127.0.0.1:-1": port "-1" is not a number in 0..65535'),
        ('[net]\nconnect = ["::1:53"]', 'm.toml: net.connect[0]: "::1:53": an IPv6 address goes in brackets, e.g. [::1]:53'),
        ('[net]\nconnect = ["[127.0.0.1]:53"]', 'm.toml: net.connect[0]: "[127.0.0.1]:53": brackets are only for IPv6 addresses'),
        ('[net]\nconnect = ["10.0.0.1"]', 'm.toml: net.connect[0]: "10.0.0.1" needs a port (ADDRESS:PORT, e.g. 127.0.0.1:8080)'),
        ('[net]\nunix = ["/nonexistent/sock"]', "m.toml: net.unix[0]: /nonexistent/sock does not exist"),
        # host paths
        ('[[mount]]\nguest = "/h"\nhost = "/"', "m.toml: mount[0].host: / is the host root, which would "
         "expose /proc, /dev and every secret on the host; grant the directories you need"),
        ('[[mount]]\nguest = "/h"\nhost = "/proc/self/root"', "m.toml: mount[0].host: /proc/self/root is the host "
         "root, which would expose /proc, /dev and every secret on the host; grant the directories you need"),
        ('[[mount]]\nguest = "/h"\nhost = "/proc/1"',
         "m.toml: mount[0].host: /proc/1 is under /proc, a host kernel view that is never granted"),
        ('[[mount]]\nguest = "/h"\nhost = "/dev/null"',
         "m.toml: mount[0].host: /dev/null is under /dev, a host kernel view that is never granted"),
        ('[[mount]]\nguest = "/h"\nhost = "~/nothing-here"',
         "m.toml: mount[0].host: ~/nothing-here does not exist (~ is not expanded; write the full path)"),
        ('[[mount]]\nguest = "/h"\nhost = ""', "m.toml: mount[0].host: is empty"),
        # env, hostname, cwd, extends, hidden
        ('[env]\n"A=B" = "x"', 'm.toml: env."A=B": "A=B": a variable name cannot contain \'=\''),
        ('[env]\n"" = "x"', 'm.toml: env."": an environment variable needs a non-empty name'),
        ('[env]\nK = "a\\u0000b"', 'm.toml: env.K: "a\\x00b" contains a NUL byte (an environment value cannot hold one)'),
        ('pass_env = ["K"]\n[env]\nK = "v"', "m.toml: pass_env[0]: K is also set in [env]; keep one"),
        ('hostname = "bad host"', 'm.toml: hostname: "bad host" is not a host name '
         "(letters, digits, '-' and '.', at most 64 characters)"),
        (f'hostname = "{"h" * 65}"', f'm.toml: hostname: "{"h" * 65}" is not a host name '
         "(letters, digits, '-' and '.', at most 64 characters)"),
        ('cwd = "/nowhere"', "m.toml: cwd: /nowhere is not inside any mount or tmpfs, so it would not exist in the guest"),
        ('cwd = "/t/s"\nhidden = ["/t/s"]\n[[tmpfs]]\nguest = "/t"', 'm.toml: cwd: /t/s is hidden by hidden[0] ("/t/s")'),
        ('extends = "base"', 'm.toml: extends: "base": the only manifest a file can extend is "default"'),
        ('hidden = ["/"]', "m.toml: hidden[0]: / would hide the whole guest filesystem"),
        ('hidden = ["//./"]', "m.toml: hidden[0]: / would hide the whole guest filesystem"),
        ('hidden = ["/a/../b"]', "m.toml: hidden[0]: /a/../b contains '..' (write the path without it)"),
        ('hidden_names = ["*"]', 'm.toml: hidden_names[0]: "*" matches every name and would hide the '
         "whole guest filesystem"),
        ('hidden_names = ["?*"]', 'm.toml: hidden_names[0]: "?*" matches every name and would hide the '
         "whole guest filesystem"),
        ('hidden_names = ["a/b"]', 'm.toml: hidden_names[0]: "a/b" is not a file-name pattern '
         "(no '/'; for a path use hidden)"),
        ('hidden_names = [""]', 'm.toml: hidden_names[0]: "" is not a file-name pattern '
         "(no '/'; for a path use hidden)"),
        ('hidden_names = [".."]', 'm.toml: hidden_names[0]: ".." is not a file name'),
        ('hidden_names = [5]', "m.toml: hidden_names[0]: expected a file-name pattern string, got an integer"),
        ('hidden_names = "x"', "m.toml: hidden_names: expected an array of file-name patterns, got a string"),
        ('hidden_names = ["a\\u0000"]',
         'm.toml: hidden_names[0]: "a\\x00" contains a NUL byte (a file name cannot hold one)'),
        (f'hidden_names = ["*.d"]\n[[mount]]\nguest = "/etc/x.d/y"\nhost = "{d}"',
         'm.toml: mount[0].guest: /etc/x.d/y is hidden by hidden_names[0] ("*.d"), so the guest could never reach it'),
        ('hidden = ["etc/shadow"]', "m.toml: hidden[0]: etc/shadow is not absolute (guest paths start with /)"),
    ]


def test_every_validation_error_names_the_key_and_the_reason(hostdirs):
    for text, expected in bad_cases(hostdirs / "data"):
        assert error_of(text) == expected, text


def test_error_is_a_value_error_with_parts():
    with pytest.raises(ValueError) as info:
        parse_manifest('[limits]\nmemory = "12Q"', "f.toml")
    assert (info.value.source, info.value.key) == ("f.toml", "limits.memory")


def test_toml_syntax_error_gives_line_and_column():
    assert error_of('cwd = "/"\nhostname = = "x"') == \
        "m.toml: line 2, column 12: TOML syntax error: Invalid value"
    assert error_of("[[mount]\n") == \
        "m.toml: line 1, column 8: TOML syntax error: Expected ']]' at the end of an array declaration"
    assert error_of('cwd = "/') == \
        "m.toml: TOML syntax error: Unterminated string (at the end of the file)"


def test_duplicate_toml_keys_are_a_syntax_error():
    assert error_of('cwd = "/"\ncwd = "/"\n') == \
        "m.toml: line 2, column 10: TOML syntax error: Cannot overwrite a value"


def test_optional_mount_is_skipped_only_when_the_host_path_is_missing(hostdirs):
    m = parse_manifest(f'[[mount]]\nguest = "/a"\nhost = "{hostdirs}/nope"\noptional = true\n'
                       f'[[mount]]\nguest = "/b"\nhost = "{hostdirs}/data"\noptional = true')
    assert [x.guest for x in m.mounts] == ["/b"]
    # optional does not excuse other errors
    assert error_of('[[mount]]\nguest = "/a"\nhost = "/proc/1"\noptional = true') == \
        "m.toml: mount[0].host: /proc/1 is under /proc, a host kernel view that is never granted"


# --------------------------------------------------------------------------
# Hostile inputs

def test_non_utf8_file_is_refused_with_its_position(tmp_path):
    path = tmp_path / "m.toml"
    path.write_bytes(b'cwd = "/"\nhostname = "\xff\xfe"\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value) == f"{path}: line 2: not valid UTF-8 (byte 0xff at offset 22)"


def test_huge_file_is_refused_without_parsing(tmp_path):
    path = tmp_path / "m.toml"
    path.write_bytes(b"# padding\n" * (1 << 20))  # 10 MiB of valid TOML comments
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value) == f"{path}: is larger than 1048576 bytes; a manifest is a few KiB of TOML"
    assert error_of_text("x" * (2 << 20)) == \
        "<string>: is larger than 1048576 bytes; a manifest is a few KiB of TOML"


def error_of_text(text):
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    return str(info.value)


def test_deeply_nested_values_are_a_clean_error():
    text = "a = " + "[" * 200_000 + "]" * 200_000
    assert error_of(text) == "m.toml: TOML syntax error: values nested too deeply"
    inline = "a = " + "{b = " * 100_000 + "1" + "}" * 100_000
    assert error_of(inline) == "m.toml: TOML syntax error: values nested too deeply"
    env_nested = "[env." + ".".join(["t"] * 20) + "]\n"
    assert error_of(env_nested) == 'm.toml: env.t: expected a string, got a table (quote numbers: "1")'


@pytest.mark.parametrize("text", [
    "[" + ".".join(["t"] * 500_000) + "]\n",
    "\n" + ".".join(["t"] * 500_000) + " = 1\n",
    "a = {" + ".".join(['"t"'] * 250_000) + " = 1}\n",
    "[[" + ".".join(["'t'"] * 250_000) + "]]\n",
])
def test_huge_dotted_keys_are_refused_before_tomllib(text):
    # tomllib is super-linear in the parts of one dotted key (minutes for
    # 1 MiB); the pre-scan must refuse these without handing them over.
    message = error_of(text)
    assert message.startswith("m.toml: line ")
    assert message.endswith(": a dotted key with more than 32 parts (the schema nests at most three deep)")


def test_dots_in_strings_and_comments_are_not_key_parts():
    dots = "." * 100
    q3, l3 = '"' * 3, "'" * 3
    text = (f"# {dots}\n"
            f"[env]\n"
            f'A = "{dots}"\n'
            f"B = '{dots}'\n"
            f'C = {q3}{dots}\n\\"{dots}{q3}\n'
            f"D = {l3}{dots}{l3}\n"
            f'"x.y" = "1.5"\n')
    m = parse_manifest(text)
    assert dict(m.env) == {"A": dots, "B": dots, "C": f'{dots}\n"{dots}', "D": dots, "x.y": "1.5"}


def test_raw_nul_and_control_bytes_are_syntax_errors():
    assert "TOML syntax error" in error_of('cwd = "/\x00"')
    assert "TOML syntax error" in error_of("cwd = \"/\x07\"")


@pytest.mark.parametrize("where, text", [
    ("hidden[0]", 'hidden = ["/a\\u0000"]'),
    ("cwd", 'cwd = "/\\u0000"'),
    ("net.connect[0]", 'net.connect = ["127.0.0.1:1\\u0000"]'),
    ("mount[0].host", '[[mount]]\nguest = "/a"\nhost = "/usr\\u0000/x"'),
    ('env."A\\x00"', '[env]\n"A\\u0000" = "x"'),
    ("hostname", 'hostname = "a\\u0000"'),
])
def test_nul_in_any_string_is_refused_naming_the_key(where, text):
    message = error_of(text)
    assert message.startswith(f"m.toml: {where}: "), message
    assert "NUL" in message or "not a host name" in message


def test_newlines_in_values_keep_the_error_on_one_line():
    message = error_of('[limits]\nmemory = "1\\n2\\r3"')
    assert message == 'm.toml: limits.memory: "1\\n2\\r3" is not a size (use e.g. 512M)'


@pytest.mark.root
def test_fifo_manifest_does_not_hang(tmp_path):
    # A planted FIFO with no writer would block a plain open() forever; run
    # the load in a child with a timeout so a regression fails, not hangs.
    fifo = tmp_path / "m.toml"
    os.mkfifo(fifo)
    code = ("import sys; from picoproc.manifest import load_manifest, ManifestError\n"
            "try: load_manifest(sys.argv[1])\n"
            "except ManifestError as e: print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == f"{fifo}: is not a regular file"


def test_directory_and_missing_file_errors(tmp_path):
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a manifest file"
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path}/nope.toml: cannot read: No such file or directory"


def test_utf8_bom_is_accepted():
    assert parse_manifest('\ufeffhostname = "bom"').hostname == "bom"


def test_symlink_loop_host_path(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert error_of(f'[[mount]]\nguest = "/x"\nhost = "{tmp_path}/a"') == \
        f"m.toml: mount[0].host: {tmp_path}/a: too many levels of symbolic links"


def test_host_symlink_into_proc_is_refused(tmp_path):
    (tmp_path / "p").symlink_to("/proc/1")
    assert error_of(f'[[mount]]\nguest = "/x"\nhost = "{tmp_path}/p"') == \
        f"m.toml: mount[0].host: {tmp_path}/p (resolves to /proc/1) is under /proc, " \
        "a host kernel view that is never granted"


# --------------------------------------------------------------------------
# Sizes, durations, endpoints, hidden patterns

@pytest.mark.parametrize("text, expected", [
    (1, 1), (4096, 4096), ("4096", 4096), ("1K", 1024), ("1k", 1024), ("64M", 64 << 20),
    ("64MiB", 64 << 20), ("64MB", 64 << 20), ("1G", 1 << 30), ("1.5G", 3 << 29),
    ("2T", 2 << 40), ("1P", 1 << 50), (" 512 M ", 512 << 20), ("100B", 100), ("0.5K", 512),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "12Q", "1.5", "-1", "1e6", "0x10", "1 G B", "1KiBB",
                                  "1iB", 1.5, True, None, [1]])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text, expected", [
    (30, 30.0), (0.5, 0.5), ("30", 30.0), ("2.5", 2.5), ("30s", 30.0), ("2m", 120.0),
    ("1h", 3600.0), ("1d", 86400.0), ("500ms", 0.5), ("1m30s", 90.0), ("1h 30m", 5400.0),
    ("1.5h", 5400.0),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "3x", "-1s", "0", "0s", "1e3", "inf", "1s2", True, None,
                                  float("inf"), float("nan"), "9999999d"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", Endpoint("127.0.0.1", 8080)),
    ("[::1]:53", Endpoint("::1", 53)),
    ("[0:0::1]:53", Endpoint("::1", 53)),  # normalised
    ("10.1.2.3:*", Endpoint("10.1.2.3", 0)),
    ("0.0.0.0:0", Endpoint("0.0.0.0", 0)),
    ("[fe80::1%eth0]:22", Endpoint("fe80::1%eth0", 22)),
])
def test_endpoints(text, expected):
    assert mf.parse_endpoint(text) == expected
    assert mf.parse_endpoint(mf.format_endpoint(expected)) == expected


@pytest.mark.parametrize("text", ["localhost:80", "127.1:80", "010.0.0.1:80", "1.2.3.4:",
                                  "1.2.3.4:x", "1.2.3.4:1234567", "[::1]", "::1", "[::1:53", ":80"])
def test_bad_endpoints(text):
    with pytest.raises(ValueError):
        mf.parse_endpoint(text)


@pytest.mark.parametrize("hidden, path, expected", [
    ("/etc/shadow", "/etc/shadow", True),
    ("/etc/shadow", "/etc/shadow/x", True),
    ("/etc/shadow", "/etc/shadowx", False),
    ("/etc/shadow", "/etc", False),
    ("/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_rsa_key", False),  # no patterns in paths
    ("/etc/shadow", "/etc/../etc/./shadow", True),
    ("/etc/shadow", "//etc//shadow/", True),
    ("/etc/shadow", "/../../etc/shadow", True),
    ("/a", "/", False),
])
def test_hidden_paths(hidden, path, expected):
    assert hidden_path_matches(hidden, path) is expected


@pytest.mark.parametrize("name, path, expected", [
    ("id_rsa", "/id_rsa", True),
    ("id_rsa", "/a/b/c/id_rsa", True),
    ("id_rsa", "/a/b/c/id_rsa.pub", False),
    ("id_rsa", "/a/id_rsa/inside", True),
    (".ssh", "/home/u/.ssh/config", True),
    (".ssh", "/home/u/.sshx", False),
    ("*.key", "/srv/tls/server.key", True),
    ("*.key", "/srv/tls/server.keys", False),
    ("*.key", "/srv/.key", True),
    ("*.KEY", "/srv/a.key", False),  # case-sensitive, like the file system
    ("ssh_host_*_key", "/etc/ssh/ssh_host_rsa_key", True),
    ("ssh_host_*_key", "/etc/ssh/ssh_host_rsa_key.pub", False),
    ("*.key", "/srv/../a.key", True),
    ("[ab].txt", "/x/a.txt", True),
    ("[ab].txt", "/x/c.txt", False),
])
def test_hidden_names(name, path, expected):
    assert hidden_name_matches(name, path) is expected
    assert Manifest(hidden_names=(name,)).is_hidden(path) is expected


def test_hidden_entries_cover_aliases_of_the_same_host_files(hostdirs):
    # /data and /alias show the same host directory: hiding a path under one
    # must hide it under the other, or the hidden entry is a paper wall.
    m = parse_manifest(textwrap.dedent(f"""
        hidden = ["/data/f.txt", "/data/sub"]
        [[mount]]
        guest = "/data"
        host = "{hostdirs}/data"
        [[mount]]
        guest = "/alias"
        host = "{hostdirs}/link"
        [[mount]]
        guest = "/parent"
        host = "{hostdirs}"
    """))
    # (/parent/link/f.txt is a symlink inside the view: hidden entries apply
    # to the path the mediation layer reaches after resolving it.)
    for path in ("/data/f.txt", "/alias/f.txt", "/parent/data/f.txt",
                 "/alias/sub/x", "/parent/data/sub"):
        assert m.is_hidden(path), path
    assert not m.is_hidden("/alias/other") and not m.is_hidden("/parent/out")
    assert m.hidden == ("/data/f.txt", "/data/sub", "/alias/f.txt", "/parent/data/f.txt",
                        "/alias/sub", "/parent/data/sub")


def test_hiding_a_host_tree_hides_mounts_inside_it(hostdirs):
    m = parse_manifest(textwrap.dedent(f"""
        hidden = ["/parent/data"]
        [[mount]]
        guest = "/parent"
        host = "{hostdirs}"
        [[mount]]
        guest = "/d"
        host = "{hostdirs}/data"
    """))
    assert m.is_hidden("/d/f.txt") and m.hidden == ("/parent/data", "/d")


# --------------------------------------------------------------------------
# The embedded default

SECRETS = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d/x", "/etc/ssl/private/k",
           "/etc/ssh/ssh_host_ed25519_key", "/root", "/root/.bashrc", "/home", "/home/u/.ssh/id_rsa",
           "/usr/share/app/server.key", "/etc/app/id_ed25519", "/tmp/.ssh/id_rsa", "/tmp/x/.aws",
           "/usr/lib/cert.p12", "/etc/krb5.keytab"]


def guest_views_of(m: Manifest, host_path: str) -> list[str]:
    """Every guest path under which the manifest's mounts show ``host_path``."""
    out = []
    for mount in m.mounts:
        if host_path == mount.host or host_path.startswith(mount.host.rstrip("/") + "/"):
            out.append((mount.guest.rstrip("/") + host_path[len(mount.host):]) or "/")
    return out


def test_default_shows_no_secret(tmp_path):
    d = default_manifest()
    for secret in SECRETS:
        # as a guest path: not under any mount, or hidden
        covered = any(secret == x.guest or secret.startswith(x.guest.rstrip("/") + "/")
                      for x in d.mounts + d.tmpfs)
        assert not covered or d.is_hidden(secret), secret
        # as a host path: every guest path showing it is hidden
        for view in guest_views_of(d, secret):
            assert d.is_hidden(view), (secret, view)
    assert not any(x.guest in ("/", "/root", "/home") for x in d.mounts)
    assert not any(x.host in ("/", "/root", "/home") for x in d.mounts)


def test_default_hides_every_private_key_file_on_this_host():
    d = default_manifest()
    checked = 0
    for mount in d.mounts:
        if mount.guest not in ("/etc",):
            continue  # /usr is large; /etc is where host keys live
        for root, dirs, files in os.walk(mount.host):
            for name in files:
                if name.endswith(("_key", ".key", ".keytab")) or name.startswith("id_") \
                        and not name.endswith(".pub"):
                    host = os.path.join(root, name)
                    for view in guest_views_of(d, host):
                        checked += 1
                        assert d.is_hidden(view), view
    # nothing to check is fine (no keys on the host); the assertion above is the test


def test_default_is_read_only_offline_and_bounded():
    d = default_manifest()
    assert d.mounts and not any(x.writable for x in d.mounts)
    # /dev/shm: POSIX shared memory and named semaphores (multiprocessing).
    assert d.tmpfs == (Tmpfs("/tmp", 64 << 20), Tmpfs("/dev/shm", 64 << 20))
    assert d.net_connect == () and d.net_listen == () and d.unix_paths == ()
    assert d.cwd == "/tmp" and d.hostname == "picoproc"
    assert d.limits == Limits(wall_time_s=None, cpu_time_s=None, memory_bytes=1 << 30, pids=256,
                              open_files=1024, output_bytes=64 << 20)
    assert [m.guest for m in d.mounts if not m.exec] == ["/etc"]


def test_default_takes_nothing_from_the_host_environment(monkeypatch):
    monkeypatch.setenv("PICOPROC_SECRET_TOKEN", "s3cret")
    monkeypatch.setenv("PATH", "/root/evil/bin")
    d = default_manifest()
    assert dict(d.env) == {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
                           "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


def test_default_mounts_only_host_directories_that_exist():
    d = default_manifest()
    for mount in d.mounts:
        assert os.path.isabs(mount.host) and os.path.exists(mount.host)
        assert os.path.realpath(mount.host) == mount.host
    for name in ("/usr", "/bin", "/lib", "/etc"):
        if os.path.isdir(name):
            assert any(m.guest == name for m in d.mounts), name
    for name in ("/lib32", "/libx32"):
        assert any(m.guest == name for m in d.mounts) == os.path.exists(name)


def resolve_in_view(m: Manifest, guest: str) -> str | None:
    """Guest path -> host path through the longest-prefix mount, following
    absolute symlinks inside the view (what the mediation layer will do)."""
    for _ in range(40):
        mounts = [x for x in m.mounts if guest == x.guest or guest.startswith(x.guest.rstrip("/") + "/")]
        if not mounts:
            return None
        mount = max(mounts, key=lambda x: len(x.guest))
        host = mount.host + guest[len(mount.guest):]
        if not os.path.islink(host):
            return host if os.path.exists(host) else None
        target = os.readlink(host)
        guest = os.path.normpath(target if target.startswith("/")
                                 else os.path.join(os.path.dirname(guest), target))
    return None


@pytest.mark.parametrize("guest", ["/usr/bin/python3", "/bin/sh", "/lib64/ld-linux-x86-64.so.2",
                                   "/etc/passwd", "/etc/ld.so.cache"])
def test_default_shows_what_python3_and_sh_need(guest):
    if not os.path.exists(guest):
        pytest.skip(f"{guest} does not exist on this host")
    d = default_manifest()
    host = resolve_in_view(d, guest)
    assert host is not None and os.path.exists(host), guest
    assert not d.is_hidden(guest)


def test_default_manifest_file_is_package_data():
    with open(os.path.join(os.path.dirname(__file__), "..", "setup.py")) as f:
        assert '"picoproc": ["*.toml"]' in f.read()
    assert mf.DEFAULT_MANIFEST_PATH.is_file()


# --------------------------------------------------------------------------
# CLI flags layered on a manifest

def test_flags_win_over_the_file(hostdirs):
    base = parse_manifest(textwrap.dedent(f"""
        cwd = "/work"
        hostname = "file"
        [env]
        A = "file"
        B = "file"
        [[mount]]
        guest = "/work"
        host = "{hostdirs}/data"
        [[tmpfs]]
        guest = "/tmp"
        size = "1M"
        [limits]
        memory = "1G"
        pids = 5
        wall_time = 10
    """))
    m = apply_overrides(
        base,
        volumes=[f"{hostdirs}/out:/work:rw", f"{hostdirs}/data:/tmp"],
        tmpfs=["/scratch:2M"],
        env=["A=flag", "C=new"],
        cwd="/scratch", hostname="flag", memory="2G", pids="7", timeout="unlimited",
        net_connect=["127.0.0.1:80"], net_listen=["[::]:8080"], net_unix=[str(hostdirs / "out")],
        cpu_time="1m", open_files="64", output="1K",
    )
    assert m.mounts == (Mount("/work", str(hostdirs / "out"), writable=True),
                        Mount("/tmp", str(hostdirs / "data")))
    assert m.tmpfs == (Tmpfs("/scratch", 2 << 20),)  # the file's /tmp tmpfs became a mount
    assert m.env == (("A", "flag"), ("B", "file"), ("C", "new"))
    assert (m.cwd, m.hostname) == ("/scratch", "flag")
    assert m.limits == Limits(wall_time_s=None, cpu_time_s=60.0, memory_bytes=2 << 30, pids=7,
                              open_files=64, output_bytes=1024)
    assert m.net_connect == (Endpoint("127.0.0.1", 80),)
    assert m.net_listen == (Endpoint("::", 8080),)
    assert m.unix_paths == (str(hostdirs / "out"),)


def test_later_mount_flag_on_the_same_guest_path_replaces_the_earlier(hostdirs):
    m = apply_overrides(Manifest(), volumes=[f"{hostdirs}/data:/a", f"{hostdirs}/data:/b",
                                             f"{hostdirs}/out:/a/:rw"])
    assert m.mounts == (Mount("/a", str(hostdirs / "out"), writable=True),
                        Mount("/b", str(hostdirs / "data")))
    m = apply_overrides(Manifest(), tmpfs=["/t:1M", "/t:2M"])
    assert m.tmpfs == (Tmpfs("/t", 2 << 20),)


def test_mount_flag_options(hostdirs):
    data = str(hostdirs / "data")
    cases = {f"{data}:/a": (False, True), f"{data}:/a:ro": (False, True), f"{data}:/a:rw": (True, True),
             f"{data}:/a:rw,noexec": (True, False), f"{data}:/a:noexec": (False, False)}
    for flag, (writable, executable) in cases.items():
        assert apply_overrides(Manifest(), volumes=[flag]).mounts == (Mount("/a", data, writable, executable),)
    # Colons before the guest path belong to the host path.
    odd = hostdirs / "x:y"
    odd.mkdir()
    assert apply_overrides(Manifest(), volumes=[f"{odd}:/a"]).mounts[0].host == str(odd)
    assert apply_overrides(Manifest(), volumes=[f"{odd}:/a:rw"]).mounts[0].host == str(odd)
    assert apply_overrides(Manifest(), tmpfs=["/t"]).tmpfs == (Tmpfs("/t", 64 << 20),)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(volumes=["/a"]), '--volume: "/a" names only one path: a volume is HOST:GUEST[:OPTIONS] '
     "(e.g. ./data:/data:ro) (for a private empty directory use --tmpfs GUEST)"),
    (dict(volumes=["/nope:/a:rw"]), "--volume: /nope does not exist"),
    (dict(volumes=["/usr:a"]), "--volume: a is not absolute (guest paths start with /)"),
    (dict(volumes=["/usr:/proc"]), "--volume: /proc is under /proc, which the library OS provides itself"),
    (dict(volumes=["/usr:/a:ro,rw"]), '--volume: "/usr:/a:ro,rw": contradictory options "ro,rw"'),
    (dict(volumes=["/usr:/a:z"]), '--volume: "/usr:/a:z": unknown option "z" (options: ro, rw, exec, noexec)'),
    (dict(volumes=["/a=/usr:ro"]), '--volume: "/a=/usr:ro" is the old GUEST=HOST order; mounts are '
     "written host first, as docker does: -v /usr:/a:ro or --mount src=/usr,dst=/a,ro"),
    (dict(mounts=["/a=/usr"]), '--mount: "/a=/usr" is the old GUEST=HOST order; mounts are written '
     "host first, as docker does: -v /usr:/a or --mount src=/usr,dst=/a"),
    (dict(mounts=["src=/usr,dts=/a"]), '--mount: "src=/usr,dts=/a": unknown key "dts" (did you mean "dst"?)'),
    (dict(mounts=["src=/usr"]), '--mount: "src=/usr": no target (dst=GUEST); use type=bind,src=HOST,'
     "dst=GUEST[,ro|rw][,noexec] or type=tmpfs,dst=GUEST[,tmpfs-size=SIZE]"),
    (dict(mounts=["type=volume,src=v,dst=/a"]), '--mount: "type=volume,src=v,dst=/a": type=volume is '
     "not supported (bind or tmpfs; picoproc has no named volumes)"),
    (dict(mounts=["src=/usr,dst=/a,ro=maybe"]), '--mount: "src=/usr,dst=/a,ro=maybe": ro="maybe" is '
     "not true or false"),
    (dict(memory="512"), '--memory: "512" is below the minimum 1M (nothing can start in less: the '
     "limit counts every page of the run, in bytes unless a unit is given)"),
    (dict(tmpfs=["/t:12Q"]), '--tmpfs: "12Q" is not a size (use e.g. 512M)'),
    (dict(tmpfs=["/t:0"]), '--tmpfs: must be greater than 0 (got "0")'),
    (dict(volumes=["/usr:/a"], tmpfs=["/a"]),
     "--tmpfs: /a is also given to --volume; a guest path is either a mount or a tmpfs"),
    (dict(net_connect=["localhost:80"]),
     '--net-connect: "localhost:80" needs a literal IP address (names are not resolved: the guest has no DNS of its own)'),
    (dict(net_listen=["1.2.3.4:70000"]), '--net-listen: "1.2.3.4:70000": port 70000 is out of range 0..65535'),
    (dict(net_unix=["/nonexistent"]), "--net-unix: /nonexistent does not exist"),
    (dict(env=["=x"]), "--env: an environment variable needs a non-empty name"),
    (dict(cwd="rel"), "--cwd: rel is not absolute (guest paths start with /)"),
    (dict(cwd="/nowhere"), "--cwd: /nowhere is not inside any mount or tmpfs, so it would not exist in the guest"),
    (dict(hostname="-x"), '--hostname: "-x" is not a host name (letters, digits, \'-\' and \'.\', at most 64 characters)'),
    (dict(timeout="soon"), '--timeout: "soon" is not a duration (use e.g. 30s, 2m, 1h30m or a number of seconds)'),
    (dict(cpu_time="0"), '--cpu-time: must be greater than 0 (got "0")'),
    (dict(memory="12Q"), '--memory: "12Q" is not a size (use e.g. 512M)'),
    (dict(pids="x"), '--pids: expected a whole number, got "x"'),
    (dict(pids="0"), "--pids: must be greater than 0 (got 0)"),
    (dict(open_files="-3"), '--open-files: expected a whole number, got "-3"'),
    (dict(output="0"), '--output-limit: must be greater than 0 (got "0")'),
    (dict(hide=["/"]), "--hide: / would hide the whole guest filesystem"),
    (dict(volumes=["/usr:/srv/x"], hide=["/srv"]),
     '--volume: /srv/x is hidden by --hide ("/srv"), so the guest could never reach it'),
    (dict(mounts=["src=/usr,dst=/home/u/.ssh"]),
     '--mount: /home/u/.ssh is hidden by the name pattern ".ssh" (manifest hidden_names[10]); '
     "choose another guest path"),
    (dict(hide_names=["x/y"]), '--hide-name: "x/y" is not a file-name pattern (no \'/\'; for a path use hidden)'),
    (dict(volumes=["/usr:/data/a.pem"], hide_names=["*.pem"]),
     '--volume: /data/a.pem is hidden by --hide-name ("*.pem"), so the guest could never reach it'),
])
def test_flag_errors_name_the_flag(kwargs, expected):
    with pytest.raises(ManifestError) as info:
        apply_overrides(default_manifest(), flag_names=True, **kwargs)
    assert str(info.value) == expected


@pytest.mark.parametrize("kwargs, expected", [
    (dict(memory="12Q"), 'memory: "12Q" is not a size (use e.g. 512M)'),
    (dict(output="0"), 'output: must be greater than 0 (got "0")'),
    (dict(volumes=["/nope:/a"]), "volumes: /nope does not exist"),
    (dict(volumes=["/usr:/a"], tmpfs=["/a"]),
     "tmpfs: /a is also given to volumes; a guest path is either a mount or a tmpfs"),
    (dict(cwd="/nowhere"), "cwd: /nowhere is not inside any mount or tmpfs, so it would not exist in the guest"),
])
def test_errors_from_python_name_the_keyword_not_the_flag(kwargs, expected):
    """A Python caller passed memory=, not --memory."""
    with pytest.raises(ManifestError) as info:
        apply_overrides(default_manifest(), **kwargs)
    assert str(info.value) == expected


def test_env_flag_without_value_copies_from_the_host_only_when_set():
    m = apply_overrides(Manifest(), env=["TERM", "UNSET_HERE", "X=1"], host_env={"TERM": "xterm"})
    assert m.env == (("TERM", "xterm"), ("X", "1"))


def test_mount_flag_lifts_the_defaults_hidden_home_but_not_key_patterns(hostdirs):
    m = apply_overrides(default_manifest(), volumes=[f"{hostdirs}/data:/home/me/src"], cwd="/home/me/src")
    assert "/home" not in m.hidden and "/root" in m.hidden
    assert not m.is_hidden("/home/me/src/f.txt")
    assert m.is_hidden("/home/me/src/.ssh/id_ed25519") and m.is_hidden("/home/me/src/tls/a.key")
    assert m.cwd == "/home/me/src"


def test_relative_host_path_in_a_flag_uses_base_dir(hostdirs):
    m = apply_overrides(Manifest(), volumes=["data:/d"], base_dir=str(hostdirs))
    assert m.mounts == (Mount("/d", str(hostdirs / "data")),)


def make_parser():
    parser = argparse.ArgumentParser(prog="picoproc run")
    add_cli_options(parser)
    return parser


def test_cli_options_build_the_final_manifest(hostdirs):
    (hostdirs / "m.toml").write_text(
        'cwd = "/d"\n[[mount]]\nguest = "/d"\nhost = "data"\n[limits]\npids = 3\n')
    args = make_parser().parse_args([
        "--manifest", str(hostdirs / "m.toml"), "--volume", f"{hostdirs}/out:/o:rw",
        "--tmpfs", "/t:1M", "--env", "K=V", "--pids", "9", "--timeout", "30s", "--memory", "256M",
        "--net-connect", "127.0.0.1:5432", "--hostname", "box", "--open-files", "32",
        "--output-limit", "1M", "--cpu-time", "10", "--hide", "/d/secret", "--hide-name", "*.pem",
    ])
    m = manifest_from_cli_args(args)
    assert m.mounts == (Mount("/d", str(hostdirs / "data")), Mount("/o", str(hostdirs / "out"), True))
    assert m.tmpfs == (Tmpfs("/t", 1 << 20),) and m.env == (("K", "V"),) and m.cwd == "/d"
    assert m.limits == Limits(30.0, 10.0, 256 << 20, 9, 32, 1 << 20)
    assert m.hostname == "box" and m.net_connect == (Endpoint("127.0.0.1", 5432),)
    assert m.is_hidden("/d/secret") and m.hidden_names == ("*.pem",) and m.is_hidden("/d/x/y.pem")


def test_cli_without_manifest_starts_from_the_default():
    args = make_parser().parse_args([])
    assert manifest_from_cli_args(args) == default_manifest()


def test_cli_bad_manifest_file_is_a_manifest_error(tmp_path):
    (tmp_path / "m.toml").write_text("[limits]\npids = -1\n")
    args = make_parser().parse_args(["--manifest", str(tmp_path / "m.toml")])
    with pytest.raises(ManifestError) as info:
        manifest_from_cli_args(args)
    assert str(info.value) == f"{tmp_path}/m.toml: limits.pids: must be greater than 0 (got -1)"


# --------------------------------------------------------------------------
# Manifests built in Python

def test_check_manifest_validates_objects_like_files(hostdirs):
    ok = Manifest(mounts=(Mount("//d/", str(hostdirs / "link")),), cwd="/d")
    assert check_manifest(ok).mounts == (Mount("/d", str(hostdirs / "data")),)
    for bad, expected in [
        (Manifest(mounts=(Mount("/x", "/nonexistent"),)), "mount[0].host: /nonexistent does not exist"),
        (Manifest(tmpfs=(Tmpfs("/t", 0),)), "tmpfs[0].size: must be greater than 0 (got 0)"),
        (Manifest(net_connect=(Endpoint("::1", 99999),)), 'net.connect[0]: "[::1]:99999": port 99999 is out of range 0..65535'),
        (Manifest(limits=Limits(pids=0)), "limits.pids: must be greater than 0 (got 0)"),
        (Manifest(mounts=(Mount("/x", str(hostdirs), writable="yes"),)), 'mount[0].writable: expected true or false, got "yes"'),
        (Manifest(env=(("A", 1),)), 'env.A: expected a string, got an integer (quote numbers: "1")'),
        (Manifest(cwd="relative"), "cwd: relative is not absolute (guest paths start with /)"),
    ]:
        with pytest.raises(ManifestError) as info:
            check_manifest(bad)
        assert str(info.value) == f"<Manifest object>: {expected}"


# --------------------------------------------------------------------------
# docs/MANIFEST.md stays the reference of every key and flag

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "MANIFEST.md")


def test_the_reference_documents_every_key_and_flag():
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    keys = (list(mf._TOP_KEYS) + list(mf._MOUNT_KEYS) + list(mf._TMPFS_KEYS) + list(mf._NET_KEYS)
            + list(mf._LIMIT_FIELDS))
    for key in keys:
        assert f"`{key}`" in doc or f"`[[{key}]]`" in doc or f"`[{key}]`" in doc, key
    parser = make_parser()
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in doc, flag


def test_the_documented_example_is_valid(tmp_path):
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    for host in ("submission", "tests", "postgresql"):
        (tmp_path / host).mkdir()
    example = (example.replace('"./submission"', f'"{tmp_path}/submission"')
               .replace('"/srv/grader/tests"', f'"{tmp_path}/tests"')
               .replace('"/run/postgresql"', f'"{tmp_path}/postgresql"'))
    m = parse_manifest(example, host_env={"TERM": "dumb"})
    assert m.cwd == "/work" and ("TERM", "dumb") in m.env
    assert Mount("/work", str(tmp_path / "submission"), writable=True) in m.mounts
    assert m.limits == Limits(120.0, 90.0, 512 << 20, 64, 256, 1 << 20)
    assert m.is_hidden("/work/answers/a.txt") and m.is_hidden("/etc/shadow")


# --------------------------------------------------------------------------
# Lifting hidden entries never exposes more than the explicit grant

def test_mount_beneath_a_hidden_path_inside_a_mounted_tree_is_refused(hostdirs):
    # Lifting /etc/ssl/private for /etc/ssl/private/x would show every other
    # key in it through the /etc mount.
    with pytest.raises(ManifestError) as info:
        apply_overrides(default_manifest(), volumes=[f"{hostdirs}/data:/etc/ssl/private/x"],
                        flag_names=True)
    assert str(info.value).startswith(
        '--volume: /etc/ssl/private/x is hidden by manifest hidden[13] ("/etc/ssl/private"), and '
        "lifting that would show the rest of /etc/ssl/private through the mount at /etc")


def test_mount_or_tmpfs_exactly_at_a_hidden_path_replaces_it(hostdirs):
    m = apply_overrides(default_manifest(), mounts=[f"src={hostdirs}/data,dst=/etc/ssl/private"],
                        tmpfs=["/etc/shadow"])
    assert "/etc/ssl/private" not in m.hidden and "/etc/shadow" not in m.hidden
    assert Mount("/etc/ssl/private", str(hostdirs / "data")) in m.mounts
    assert Tmpfs("/etc/shadow", 64 << 20) in m.tmpfs
    assert m.is_hidden("/etc/gshadow")


def test_alias_entries_do_not_hide_a_deeper_explicit_mount(hostdirs):
    hidden_lib = apply_overrides(default_manifest(), hide=["/usr/lib/x"])
    assert hidden_lib.is_hidden("/lib/x") and hidden_lib.is_hidden("/usr/lib/x")
    m = apply_overrides(hidden_lib, volumes=[f"{hostdirs}/data:/usr/lib/x"])
    assert not m.is_hidden("/usr/lib/x/f.txt")  # the user's own directory now
    assert m.is_hidden("/lib/x")  # still the host's /usr/lib/x there


def test_bad_argument_types_are_manifest_errors(tmp_path):
    with pytest.raises(ManifestError) as info:
        parse_manifest(b'cwd = "/"')
    assert str(info.value) == "<string>: expected TOML text (str), got bytes"
    with pytest.raises(ManifestError) as info:
        load_manifest(os.fsencode(tmp_path / "missing.toml"))
    assert str(info.value) == f"{tmp_path}/missing.toml: cannot read: No such file or directory"
