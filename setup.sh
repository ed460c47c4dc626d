#!/usr/bin/env bash
# Sets up picoproc on a fresh Debian machine of this kind (run as root):
# the system packages its build, tests and comparison peers need, then the
# package itself (editable, with the C module built by cffi).
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  gcc make libseccomp-dev         # build: cffi module, library OS, test guests
  python3-cffi-backend            # the unprivileged half of the tests runs /usr/bin/python3
  busybox-static sqlite3 strace   # real programs the tests run
  golang-go nodejs                # runtimes the tests run inside (servers on loopback, workers)
  procps                          # ps, pgrep, pkill, top against the guest's /proc
  ruby                            # a runtime whose thread timer is a POSIX timer
  openjdk-17-jdk-headless perl    # more runtimes the tests run inside (java as /usr/bin/java, an alternatives link)
  git                             # an everyday tool the tests run inside
  libpython3.11-testsuite         # python3 -m test: the perf suite, picoproc bench compat
  bubblewrap crun runsc           # comparison backends (peers)
  podman runc containerd          # engines and runtimes picoproc-oci is tested and measured with
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test,peers]'
# A version manager's shims (pyenv) name only the commands they have seen:
# the `picoproc` command must be one of them for README's first command.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
make -s -C tests/guests
