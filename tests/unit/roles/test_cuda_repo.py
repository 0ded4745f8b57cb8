"""The cuda_repo role and the openpgp_fingerprints filter it checks NVIDIA's signing key with.

Role cases run the real role on localhost in check mode as another OS (injected facts): the rendered apt and dnf
files come from the diff and nothing on this machine changes. The install phase downloads the key from NVIDIA, which
cannot work here, so those runs skip it; the key cases run the install phase for real with a file:// key URL and the
keyring redirected into the test's temporary directory.
"""

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gpubox.llm.plugins.filter.openpgp_fingerprints import FilterModule, openpgp_fingerprints

from .rolerun import os_facts, run_role

# rolerun's tags=[...] selects tasks by tag, which leaves out its own untagged include of the role; skipping the
# phases that need NVIDIA's servers or a package manager keeps the rest.
OFFLINE = ("--skip-tags", "cuda_repo_install,cuda_repo_verify")
NVIDIA = "https://developer.download.nvidia.com/compute/cuda/repos"
KEY_3BF863CC = "EB693B3035CD5710E231E123A4B469963BF863CC"
KEY_D42D0685 = "610C7B14E068A878070DA4E99CD0A493D42D0685"
KEY_8793F200 = "02182E60104FCDC26EAE1B8597A5D4CB8793F200"

# Two ed25519 test keys made with GnuPG 2.2.40 (gpg --quick-gen-key; the first also has a cv25519 subkey, whose
# fingerprint must not come back). gpg --with-colons printed the fingerprints below.
KEY_ONE = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawJ+RBYJKwYBBAHaRw8BAQdAXBm/99diu/ftdgI+iGMmWPoWsdYAHh94QJSt
us+GZpa0JWdwdWJveCB0ZXN0IG9uZSA8b25lQGV4YW1wbGUuaW52YWxpZD6IkAQT
FggAOBYhBNCKUAbtEnht9t7MGG83LtrJZs2QBQJrAn5EAhsDBQsJCAcCBhUKCQgL
AgQWAgMBAh4BAheAAAoJEG83LtrJZs2QQ2IBAOIOZWxj2oSWKZGaHB+PJM5nUjOQ
hvg2YcD0rRk73rNdAQDZgEJySX0EkPdZnnFcrG/coMWwenZ4hTSYaH0LM7GpB7g4
BGsCfkQSCisGAQQBl1UBBQEBB0A4z4GuJgUvQYueMTw6oReQcuZxrMDT9rB+d5PD
YMePIgMBCAeIeAQYFggAIBYhBNCKUAbtEnht9t7MGG83LtrJZs2QBQJrAn5EAhsM
AAoJEG83LtrJZs2QWesBAIami6h7wk3gcg2OlGSAX3aPpLUp91+opFwHHhBWzDA0
APwPzl3MomhbNdJ9WsFkVwX8X7dreWKOKTlkwmuhbjCACw==
=aXqJ
-----END PGP PUBLIC KEY BLOCK-----
"""
KEY_ONE_FPR = "D08A5006ED12786DF6DECC186F372EDAC966CD90"
KEY_ONE_SUBKEY_FPR = "AAA1844DDC14EE402D6FB086C858BF829219DAC6"
KEY_TWO = """-----BEGIN PGP PUBLIC KEY BLOCK-----
Comment: an armor header, which the parser must skip

mDMEawJ+RBYJKwYBBAHaRw8BAQdAkyEFiWLiKKdJm+5tqxWwsxcbM1eyzSZ0unIJ
9hs4Uqe0JWdwdWJveCB0ZXN0IHR3byA8dHdvQGV4YW1wbGUuaW52YWxpZD6IkAQT
FggAOBYhBOrwbb5zl1OBamouoJlFWu62ansnBQJrAn5EAhsDBQsJCAcCBhUKCQgL
AgQWAgMBAh4BAheAAAoJEJlFWu62ansnfKUBAMLyesy0bRFMlS0uQhIAMlU2l+2v
NxWPzNhhvuGwiyKAAP9c6wRxFs3Yj9UkVxEzTMGgG0lJZepoCuQ83xlwmUyrCw==
=6rel
-----END PGP PUBLIC KEY BLOCK-----
"""
KEY_TWO_FPR = "EAF06DBE739753816A6A2EA099455AEEB66A7B27"


def _binary(armored):
    body = armored.split("\n\n", 1)[1].split("\n=", 1)[0]
    return base64.b64decode("".join(body.split()))


# --- the filter ----------------------------------------------------------------------------------------------


def test_filter_is_registered():
    assert FilterModule().filters()["openpgp_fingerprints"] is openpgp_fingerprints


def test_armored_key_gives_the_primary_fingerprint_only():
    assert openpgp_fingerprints(KEY_ONE) == [KEY_ONE_FPR]
    assert KEY_ONE_SUBKEY_FPR not in openpgp_fingerprints(KEY_ONE)


def test_two_keys_in_one_file_in_order():
    assert openpgp_fingerprints(KEY_ONE + KEY_TWO) == [KEY_ONE_FPR, KEY_TWO_FPR]


def test_base64_of_armored_and_of_binary_files():
    # What ansible.builtin.slurp returns for an .asc and a .gpg file.
    assert openpgp_fingerprints(base64.b64encode(KEY_ONE.encode()).decode(), "base64") == [KEY_ONE_FPR]
    assert openpgp_fingerprints(base64.b64encode(_binary(KEY_ONE)).decode(), "base64") == [KEY_ONE_FPR]


def test_new_format_packet_headers():
    # gpg writes old-format headers; the same packets with new-format headers (RFC 9580, 4.2.1) must read the same.
    data = _binary(KEY_TWO)
    out = b""
    pos = 0
    while pos < len(data):
        header = data[pos]
        assert header & 0xC0 == 0x80 and header & 0x03 == 0  # old format, one-octet length
        tag, length = (header >> 2) & 0x0F, data[pos + 1]
        out += bytes([0xC0 | tag, length]) + data[pos + 2 : pos + 2 + length]
        pos += 2 + length
    assert openpgp_fingerprints(base64.b64encode(out).decode(), "base64") == [KEY_TWO_FPR]


@pytest.mark.parametrize(
    ("data", "encoding", "message"),
    [
        ("not a key", "text", "not an OpenPGP packet"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDME\n", "text", "without an END line"),
        (base64.b64encode(_binary(KEY_ONE)[:20]).decode(), "base64", "truncated"),
        ("%%%", "base64", "not base64"),
        (KEY_ONE, "hex", "encoding must be"),
        (42, "text", "expected a string"),
    ],
    ids=["junk", "no-end", "truncated", "bad-base64", "bad-encoding", "not-a-string"],
)
def test_filter_refuses_what_is_not_a_key(data, encoding, message):
    with pytest.raises(AnsibleFilterError, match=message):
        openpgp_fingerprints(data, encoding)


# --- the role ------------------------------------------------------------------------------------------------


def _run(tmp_path, os_name, variables=None, *, facts=None, extra_args=OFFLINE, check=True):
    all_vars = {"cuda_repo_yum_repos_dir": str(tmp_path / "yum.repos.d")}
    (tmp_path / "yum.repos.d").mkdir(exist_ok=True)
    all_vars.update(variables or {})
    return run_role(
        tmp_path,
        "cuda_repo",
        variables=all_vars,
        facts=facts or os_facts(os_name),
        extra_args=extra_args,
        check=check,
    )


def _changed_tasks(run):
    return [name for name, result in run.tasks() if result.get("changed")]


def _failed_task(run):
    return next(name for name, result in run.tasks() if result.get("failed"))


def _fact(run, name):
    return run.result("Preflight | Decide what the role writes")["ansible_facts"][name]


@pytest.mark.parametrize(
    ("os_name", "distro"),
    [("ubuntu2204", "ubuntu2204"), ("ubuntu2404", "ubuntu2404"), ("debian12", "debian12"), ("debian13", "debian13")],
)
def test_apt_source_and_pin(tmp_path, os_name, distro):
    run = _run(tmp_path, os_name)
    assert run.rc == 0, run.output
    sources = f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.sources"
    text = run.rendered(sources)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "Types: deb",
        f"URIs: {NVIDIA}/{distro}/x86_64/",
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/cuda-archive-keyring.asc",
    ]
    pin = run.rendered("/etc/apt/preferences.d/cuda-repository-pin-600")
    assert "Package: *\nPin: release l=NVIDIA CUDA\nPin-Priority: 600\n" in pin
    # NVIDIA's Ubuntu pin file also keeps Ubuntu's own Nsight packages out; Debian has no such file from NVIDIA.
    assert ("Package: nsight-compute\nPin: origin *ubuntu.com*\nPin-Priority: -1" in pin) == os_name.startswith(
        "ubuntu"
    )
    assert sorted(run.changed_paths()) == sorted([sources, "/etc/apt/preferences.d/cuda-repository-pin-600"])
    assert _fact(run, "cuda_repo_id") == f"{distro}/x86_64"
    assert _fact(run, "cuda_repo_url") == f"{NVIDIA}/{distro}/x86_64/"
    key = KEY_8793F200 if distro == "debian13" else KEY_3BF863CC
    keyfile = "8793F200.pub" if distro == "debian13" else "3bf863cc.pub"
    shown = run.result("Preflight | Show the repository")["msg"]
    assert f"{NVIDIA}/{distro}/x86_64/{keyfile} ({key})" in shown


@pytest.mark.parametrize(
    ("os_name", "distro"), [("rocky8", "rhel8"), ("rocky9", "rhel9"), ("alma9", "rhel9"), ("rhel9", "rhel9")]
)
def test_dnf_repository_file(tmp_path, os_name, distro):
    run = _run(tmp_path, os_name)
    assert run.rc == 0, run.output
    path = str(tmp_path / "yum.repos.d" / f"cuda-{distro}.repo")
    lines = [line for line in run.rendered(path).splitlines() if line and not line.startswith("#")]
    assert lines == [
        f"[cuda-{distro}-x86_64]",
        f"name=cuda-{distro}-x86_64",
        f"baseurl={NVIDIA}/{distro}/x86_64",
        "enabled=1",
        "gpgcheck=1",
        f"gpgkey={NVIDIA}/{distro}/x86_64/D42D0685.pub",
    ]
    assert run.changed_paths() == [path]
    assert _fact(run, "cuda_repo_id") == f"{distro}/x86_64"
    assert KEY_D42D0685 in run.result("Preflight | Show the repository")["msg"]


def test_aarch64_uses_sbsa(tmp_path):
    run = _run(tmp_path, "ubuntu2404", facts=os_facts("ubuntu2404", architecture="aarch64"))
    assert run.rc == 0, run.output
    text = run.rendered("/etc/apt/sources.list.d/cuda-ubuntu2404-sbsa.sources")
    assert f"URIs: {NVIDIA}/ubuntu2404/sbsa/" in text
    assert _fact(run, "cuda_repo_id") == "ubuntu2404/sbsa"


def test_mirror_pin_priority_and_overrides(tmp_path):
    run = _run(
        tmp_path,
        "ubuntu2004",
        {
            "cuda_repo_distro": "ubuntu2004",
            "cuda_repo_base_url": "https://mirror.example.internal/cuda/repos/",
            "cuda_repo_apt_pin_priority": 400,
        },
    )
    assert run.rc == 0, run.output
    text = run.rendered("/etc/apt/sources.list.d/cuda-ubuntu2004-x86_64.sources")
    assert "URIs: https://mirror.example.internal/cuda/repos/ubuntu2004/x86_64/\n" in text
    assert "Pin-Priority: 400\n" in run.rendered("/etc/apt/preferences.d/cuda-repository-pin-600")
    # The key comes from the mirror too, and is still checked against NVIDIA's fingerprint.
    shown = run.result("Preflight | Show the repository")["msg"]
    assert f"https://mirror.example.internal/cuda/repos/ubuntu2004/x86_64/3bf863cc.pub ({KEY_3BF863CC})" in shown


def test_custom_key_with_fingerprint_in_the_dnf_file(tmp_path):
    run = _run(
        tmp_path,
        "rocky9",
        {
            "cuda_repo_key_url": "https://keys.example.internal/cuda.pub",
            "cuda_repo_key_fingerprint": "d08a 5006 ed12 786d f6de  cc18 6f37 2eda c966 cd90",
        },
    )
    assert run.rc == 0, run.output
    assert "gpgkey=https://keys.example.internal/cuda.pub\n" in run.rendered(
        str(tmp_path / "yum.repos.d" / "cuda-rhel9.repo")
    )
    assert f"({KEY_ONE_FPR})" in run.result("Preflight | Show the repository")["msg"]


def _conflict(tmp_path, name="cuda-rhel9-x86_64-old.repo", url=f"{NVIDIA}/rhel9/x86_64"):
    repos = tmp_path / "yum.repos.d"
    repos.mkdir(exist_ok=True)
    (repos / name).write_text(f"[cuda-rhel9-x86_64]\nname=cuda\nbaseurl={url}\nenabled=1\n")
    return str(repos / name)


def test_other_source_of_the_repository_fails_before_any_change(tmp_path):
    other = _conflict(tmp_path)
    # Neither a commented-out line, nor another repository, nor the role's own file count.
    (tmp_path / "yum.repos.d" / "commented.repo").write_text(f"#baseurl={NVIDIA}/rhel9/x86_64\n")
    _conflict(tmp_path, "other.repo", f"{NVIDIA}/rhel9/sbsa")
    _conflict(tmp_path, "cuda-rhel9.repo")
    run = _run(tmp_path, "rocky9")
    assert run.rc != 0
    message = " ".join(run.failure().split())
    assert f"{other} already configures {NVIDIA}/rhel9/x86_64/" in message
    assert "cuda_repo_remove_conflicting_sources: true" in message
    assert _failed_task(run).endswith("Preflight | Check for other sources of the repository")
    assert run.changed_paths() == []
    assert _changed_tasks(run) == []


def test_other_source_is_removed_when_asked(tmp_path):
    other = _conflict(tmp_path)
    run = _run(tmp_path, "rocky9", {"cuda_repo_remove_conflicting_sources": True})
    assert run.rc == 0, run.output
    assert run.changed_paths() == [str(tmp_path / "yum.repos.d" / "cuda-rhel9.repo")]
    removed = run.result("Configure | Remove other sources of the repository")["results"]
    assert [(r["__cuda_repo_conflict"], r["invocation"]["module_args"]["state"], r["changed"]) for r in removed] == [
        (other, "absent", True)
    ]


DEBIAN11 = {"distribution_release": "bullseye", "distribution_version": "11.11", "distribution_major_version": "11"}
SUSE = {"distribution": "SLES", "os_family": "Suse", "distribution_version": "15.6", "distribution_major_version": "15"}


@pytest.mark.parametrize(
    ("os_name", "facts", "variables", "expected"),
    [
        (
            "ubuntu2004",
            {},
            {},
            "this role knows no repository for Ubuntu 20.04 (Ubuntu-20.04). Supported: Ubuntu 22.04 (ubuntu2204), "
            "Ubuntu 24.04 (ubuntu2404), Debian 12 (debian12), Debian 13 (debian13) and RHEL/Rocky/AlmaLinux 8 (rhel8) "
            "and 9 (rhel9), on x86_64 or aarch64 (sbsa). Fix: use a supported release, or set cuda_repo_distro",
        ),
        ("debian12", DEBIAN11, {}, "no repository for Debian 11.11 (Debian-11)"),
        ("rocky9", {"distribution_major_version": "10", "distribution_version": "10.0"}, {}, "(Rocky-10)"),
        ("rocky9", SUSE, {}, "cuda_repo configures apt (Debian, Ubuntu) or dnf (RHEL, Rocky, AlmaLinux) repositories"),
        ("ubuntu2404", {"architecture": "ppc64le"}, {}, "no directory for architecture ppc64le"),
        ("ubuntu2404", {}, {"cuda_repo_distro": "rhel9"}, "cuda_repo_distro 'rhel9' does not fit this Debian-family"),
        ("rocky9", {}, {"cuda_repo_distro": "ubuntu2404"}, "cuda_repo_distro 'ubuntu2404' does not fit this RedHat"),
        ("ubuntu2404", {}, {"cuda_repo_arch": "x86 64"}, "cuda_repo_arch 'x86 64' is not a directory name"),
        ("ubuntu2404", {}, {"cuda_repo_base_url": "developer.download.nvidia.com"}, "is not an http(s) URL"),
        ("ubuntu2404", {}, {"cuda_repo_key_url": "ftp://keys/cuda.pub"}, "is not the http(s) or file:// URL"),
        (
            "ubuntu2404",
            {},
            {"cuda_repo_key_url": "https://keys.example.internal/cuda.pub"},
            "cuda_repo_key_fingerprint is empty: the role only trusts a key whose fingerprint it was told",
        ),
        ("ubuntu2404", {}, {"cuda_repo_key_fingerprint": "3BF863CC"}, "is not a key fingerprint (40 hexadecimal"),
    ],
    ids=[
        "ubuntu2004",
        "debian11",
        "rocky10",
        "suse",
        "ppc64le",
        "rpm-distro-on-ubuntu",
        "deb-distro-on-rocky",
        "bad-arch",
        "bad-base-url",
        "bad-key-url",
        "key-url-without-fingerprint",
        "short-fingerprint",
    ],
)
def test_bad_input_fails_in_preflight_before_any_change(tmp_path, os_name, facts, variables, expected):
    run = _run(tmp_path, os_name, variables, facts=os_facts(os_name, **facts), extra_args=())
    assert run.rc != 0, run.output
    assert expected in " ".join(run.failure().split())
    assert " : Preflight | " in _failed_task(run)
    assert run.changed_paths() == []
    assert _changed_tasks(run) == []


def test_unsupported_release_passes_with_the_override(tmp_path):
    run = _run(tmp_path, "debian12", {"cuda_repo_distro": "debian11"}, facts=os_facts("debian12", **DEBIAN11))
    assert run.rc == 0, run.output
    assert f"URIs: {NVIDIA}/debian11/x86_64/" in run.rendered("/etc/apt/sources.list.d/cuda-debian11-x86_64.sources")


# --- the signing key (install phase, for real, inside tmp_path) -------------------------------------------------


def _key_run(tmp_path, key_text, fingerprint, keyring=None):
    source = tmp_path / "served.asc"
    source.write_text(key_text)
    keyring = keyring or tmp_path / "keyrings" / "cuda-archive-keyring.asc"
    return _run(
        tmp_path,
        "ubuntu2404",
        {
            "cuda_repo_key_url": f"file://{source}",
            "cuda_repo_key_fingerprint": fingerprint,
            # Test seam: the role's keyring path, so that the real install phase writes only under tmp_path.
            "__cuda_repo_apt_keyring": str(keyring),
        },
        extra_args=("--skip-tags", "cuda_repo_configure,cuda_repo_verify"),
        check=False,
    ), keyring


def test_key_is_downloaded_checked_and_left_alone_after(tmp_path):
    run, keyring = _key_run(tmp_path, KEY_ONE, KEY_ONE_FPR)
    assert run.rc == 0, run.output
    assert keyring.read_text() == KEY_ONE
    assert oct(keyring.stat().st_mode & 0o777) == "0o644"
    assert run.result("Install | Download the key")["changed"] is True

    again = _key_run(tmp_path, KEY_ONE, KEY_ONE_FPR)[0]
    assert again.rc == 0, again.output
    assert _changed_tasks(again) == []


def test_key_with_another_fingerprint_is_replaced(tmp_path):
    keyring = tmp_path / "keyrings" / "cuda-archive-keyring.asc"
    keyring.parent.mkdir()
    keyring.write_text(KEY_TWO)  # another distro's key, left from before a release upgrade
    run = _key_run(tmp_path, KEY_ONE, KEY_ONE_FPR, keyring)[0]
    assert run.rc == 0, run.output
    assert keyring.read_text() == KEY_ONE


@pytest.mark.parametrize("already_there", [False, True], ids=["downloaded", "already-there"])
def test_key_with_the_wrong_fingerprint_is_removed_and_fails(tmp_path, already_there):
    keyring = tmp_path / "keyrings" / "cuda-archive-keyring.asc"
    if already_there:  # the server still serves the same wrong key: nothing to download, still refused
        keyring.parent.mkdir()
        keyring.write_text(KEY_TWO)
    run = _key_run(tmp_path, KEY_TWO, KEY_ONE_FPR, keyring)[0]
    assert run.rc != 0
    message = " ".join(run.failure().split())
    assert f"({keyring}) has the fingerprint(s) {KEY_TWO_FPR}, not {KEY_ONE_FPR}. The role removed it" in message
    assert not keyring.exists()
