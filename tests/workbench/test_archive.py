"""`childlookup policy bundle`: an OPA bundle tarball of the policy, reproducible and loadable.

That real OPA loads it and answers as the in-process engine does is shown by tests/policy/
test_parity.py and tests/policy/test_opa.py, which both serve this tarball.
"""

from __future__ import annotations

import json
import shutil
import tarfile

from gateway.cli import main
from gateway.policy import load_bundle
from tests.factories import POLICY_DIR


def bundle(capsys, directory, out) -> int:
    code = main(["policy", "bundle", "--dir", str(directory), "--out", str(out)])
    capsys.readouterr()
    return code


def test_the_tarball_holds_manifest_data_and_policy_modules_at_the_bundle_root(tmp_path, capsys):
    out = tmp_path / "bundle.tar.gz"

    assert bundle(capsys, POLICY_DIR, out) == 0

    with tarfile.open(out, "r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("/.manifest").read())
        data = json.loads(tar.extractfile("/data.json").read())
    assert names == ["/.manifest", "/catalogue.rego", "/data.json", "/plan.rego", "/release.rego"]
    assert manifest["revision"] == load_bundle(POLICY_DIR).revision
    assert data == load_bundle(POLICY_DIR).data


def test_the_same_policy_always_gives_the_same_bytes(tmp_path, capsys):
    bundle(capsys, POLICY_DIR, tmp_path / "first.tar.gz")
    bundle(capsys, POLICY_DIR, tmp_path / "second.tar.gz")

    assert (tmp_path / "first.tar.gz").read_bytes() == (tmp_path / "second.tar.gz").read_bytes()


def test_a_package_outside_the_manifest_roots_is_refused(tmp_path, capsys):
    policies = shutil.copytree(POLICY_DIR, tmp_path / "policies")
    (policies / "other.rego").write_text("package elsewhere\n\nimport rego.v1\n\nx := 1\n")

    code = main(["policy", "bundle", "--dir", str(policies), "--out", str(tmp_path / "b.tar.gz")])

    assert code == 2
    assert "package elsewhere (other.rego)" in capsys.readouterr().err
    assert not (tmp_path / "b.tar.gz").exists()


def test_a_policy_that_does_not_compile_is_not_bundled(tmp_path, capsys):
    policies = shutil.copytree(POLICY_DIR, tmp_path / "policies")
    with (policies / "release.rego").open("a") as release:
        release.write("\nbroken if {\n")

    code = main(["policy", "bundle", "--dir", str(policies), "--out", str(tmp_path / "b.tar.gz")])

    assert code == 2
    assert "does not compile" in capsys.readouterr().err
    assert not (tmp_path / "b.tar.gz").exists()
