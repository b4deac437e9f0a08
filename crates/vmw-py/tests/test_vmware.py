"""vmw.VMWare against a vCenter simulator, as a pycloudlib user drives it.

`cargo xtask python` runs this with the simulator's configuration in
``PYCLOUDLIB_CONFIG`` (VMs report 127.0.0.1) and the SSH test peer playing
every guest (``VMW_SSH_USER``, ``VMW_SSH_PORT``), in a home of its own whose
vmw key the peer accepts.
"""

from __future__ import annotations

import _thread
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import vmw
from vmw import Result, VMWare


def _tag() -> str:
    return "py-" + uuid.uuid4().hex[:8]


def _vms() -> list[str]:
    """Every VM in the simulator's folder, by name (through govc)."""
    config = os.environ["PYCLOUDLIB_CONFIG"]
    text = Path(config).read_text(encoding="utf-8")
    values = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "GOVMOMI_HOME": os.path.join(os.environ["HOME"], ".govmomi"),
        "GOVC_URL": values["server"],
        "GOVC_USERNAME": values["username"],
        "GOVC_PASSWORD": values["password"],
        "GOVC_INSECURE": "1",
    }
    out = subprocess.run(
        [os.environ["VMW_GOVC"], "find", values["folder"], "-type", "m"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted(line.rsplit("/", 1)[-1] for line in out.splitlines() if line)


@pytest.fixture
def cloud() -> Iterator[VMWare]:
    with VMWare(tag=_tag()) as c:
        yield c


def test_the_pycloudlib_names_and_types_are_there(cloud: VMWare) -> None:
    assert VMWare._type == "vmware"
    assert cloud.tag.startswith("py-")
    assert cloud.config["folder"] == "/DC0/vm"
    assert "password" not in cloud.config
    assert Path(cloud.key_pair.public_key_path).is_file()
    assert "jammy" in cloud.releases()
    image = cloud.released_image("jammy")
    assert image == "/DC0/vm/TEMPLATE-cloud-init-jammy"
    assert cloud.daily_image(release="jammy") == image
    with pytest.raises(NotImplementedError):
        cloud.image_serial(image)
    assert cloud.get_image_id_from_name("jammy") == image


def test_an_unknown_release_names_those_there_are(cloud: VMWare) -> None:
    with pytest.raises(vmw.UnknownReleaseError) as caught:
        cloud.released_image("stonking")
    assert "jammy" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, vmw.ImageNotFoundError)
    assert caught.value.category == "input"


def test_a_bad_tag_and_a_bad_config_fail_before_anything(tmp_path: Path) -> None:
    with pytest.raises(vmw.InvalidTagNameError) as tag:
        VMWare(tag="Not_Valid", timestamp_suffix=False)
    assert tag.value.rules_failed
    missing = tmp_path / "missing.toml"
    with pytest.raises(vmw.CloudSetupError):
        VMWare(tag=_tag(), config_file=str(missing))
    with pytest.raises(vmw.InvalidOptionError):
        VMWare(tag=_tag()).launch("TEMPLATE-cloud-init-jammy", instance_type="2c4\u00e9")


def test_a_whole_life(cloud: VMWare, tmp_path: Path) -> None:
    image = cloud.released_image("jammy")
    with cloud.launch(image_id=image, user_data="#cloud-config\nruncmd: [true]\n") as instance:
        instance.wait()
        assert instance.name == instance.id
        assert instance.name.startswith(cloud.tag + "-")
        assert instance.ip == "127.0.0.1"
        assert instance in cloud.created_instances

        result = instance.execute("echo out; echo err >&2; exit 3")
        assert isinstance(result, Result)
        assert (result.stdout, result.stderr, result.return_code) == ("out", "err", 3)
        assert not result and result.failed and not result.ok
        ok = instance.execute(["printf", "%s", "a b"])
        assert ok == "a b" and ok and ok.ok
        assert instance.execute("cat", stdin="piped").stdout == "piped"
        assert instance.run_script("#!/bin/sh\necho script\n").stdout == "script"

        pushed = tmp_path / "pushed"
        pushed.write_text("pushed\n", encoding="utf-8")
        remote = f"/tmp/{uuid.uuid4().hex}"
        instance.push_file(str(pushed), remote)
        pulled = tmp_path / "pulled"
        instance.pull_file(remote, pulled)
        assert pulled.read_text(encoding="utf-8") == "pushed\n"
        instance.execute(["rm", "-f", remote])

        boot_id = instance.get_boot_id()
        assert boot_id
        # A boot id other than the one given: the wait returns once the
        # guest is ready (the peer keeps one boot id, so no real restart).
        instance.wait_for_restart("not-" + boot_id)
        instance.__del__()  # closes SSH; the next call connects again
        assert instance.get_boot_id() == boot_id
        instance.shutdown()
        instance.wait_for_stop()
        instance.start()
        assert instance.ip == "127.0.0.1"

        snapshot = cloud.snapshot(instance, clean=False)
        assert snapshot == f"/DC0/vm/{instance.name}-image"
        assert snapshot in cloud.created_images
        child = cloud.launch(snapshot, wait=False)
        assert child.name in _vms()
        assert child.delete() == []
        assert child.delete() == [], "deleting twice is fine"
        child.wait_for_delete()
        cloud.delete_image(snapshot)
    assert instance.name not in _vms()
    assert cloud.clean() == []


def test_instance_type_username_and_launch_options(cloud: VMWare) -> None:
    instance = cloud.launch(
        "TEMPLATE-cloud-init-jammy",
        instance_type="1c512m",
        username=os.environ["VMW_SSH_USER"],
        wait=False,
        name=cloud.tag + "-named",
        metadata={"vmw-test": "a value"},
    )
    assert instance.name == cloud.tag + "-named"
    assert instance.username == os.environ["VMW_SSH_USER"]
    found = cloud.get_instance(instance.name, username="someone")
    assert found.username == "someone"
    with pytest.raises(vmw.InvalidOptionError) as caught:
        cloud.launch("TEMPLATE-cloud-init-jammy", nonsense=1)
    assert "nonsense" in str(caught.value)
    assert cloud.clean() == []
    assert instance.name not in _vms()


def test_templates_and_foreign_vms_are_refused(cloud: VMWare) -> None:
    with pytest.raises(vmw.RefusedError) as caught:
        cloud.delete_image("TEMPLATE-cloud-init-jammy")
    assert caught.value.category == "refused"
    assert isinstance(caught.value, ValueError)
    assert "TEMPLATE-cloud-init-jammy" in _vms()
    with pytest.raises(vmw.InstanceNotFoundError):
        cloud.get_instance("no-such-vm")


def test_a_failing_wait_is_rolled_back(tmp_path: Path) -> None:
    # A port where nothing answers: SSH never comes, the launch fails at
    # its wait and removes the VM it made.
    with VMWare(tag=_tag(), ssh_port=1) as cloud:
        before = _vms()
        with pytest.raises(vmw.PycloudlibTimeoutError) as caught:
            cloud.launch("TEMPLATE-cloud-init-jammy", ready_timeout=0.05)
        assert isinstance(caught.value, vmw.VmwError)
        assert "was removed" in str(caught.value)
        assert _vms() == before


def _cloud_init_mode(mode: str) -> None:
    """Makes the SSH peer's cloud-init stand-in answer ``mode`` from now on."""
    control = Path(os.environ["VMW_TEST_CLOUD_INIT_CONTROL"])
    tmp = control.with_name(control.name + ".py")
    tmp.write_text(f"delay=0.300\nmode={mode}\n", encoding="utf-8")
    os.replace(tmp, control)


def test_cloud_init_errors_end_waits_as_pycloudlib_s_do(
    cloud: VMWare, caplog: pytest.LogCaptureFixture
) -> None:
    # pycloudlib's waits end once cloud-init has finished, errors or not:
    # its callers (cloud-init's own tests among them) launch user data
    # meant to fail and judge cloud-init's status themselves.
    _cloud_init_mode("error")
    try:
        with caplog.at_level(logging.WARNING, logger="vmw"):
            instance = cloud.launch("TEMPLATE-cloud-init-jammy", user_data="#cloud-config\n")
            instance.wait()
        status = instance.execute("cloud-init status --long")
        assert status.return_code == 1
        assert "status: error" in status.stdout
        assert any("cloud-init finished with errors" in r.getMessage() for r in caplog.records)
        assert instance.name in _vms()
        instance.delete()
    finally:
        _cloud_init_mode("done")


def test_ctrl_c_mid_launch_leaves_nothing() -> None:
    with VMWare(tag=_tag(), ssh_port=1) as cloud:
        before = _vms()
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                cloud.launch("TEMPLATE-cloud-init-jammy")
        finally:
            timer.cancel()
        assert _vms() == before
        assert cloud.clean() == []


def test_a_run_killed_outright_is_found_by_the_next(cloud: VMWare) -> None:
    tag = _tag()
    # Its guest never answers SSH: the launch is still waiting when killed.
    script = (
        f"import vmw\nvmw.VMWare(tag={tag!r}, ssh_port=1).launch('TEMPLATE-cloud-init-jammy')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not [n for n in _vms() if n.startswith(tag + "-")]:
            assert time.monotonic() < deadline, "the launch made no VM"
            assert proc.poll() is None, "the launch ended by itself"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    (name,) = [n for n in _vms() if n.startswith(tag + "-")]
    # Another cloud of the same user resolves the killed run's record (once
    # the govc calls it had under way are over).
    deadline = time.monotonic() + 60
    while True:
        found = cloud.recover()
        if found["marked"]:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert [p.rsplit("/", 1)[-1] for p in found["marked"]] == [name]
    assert found["errors"] == []
    assert cloud.recover()["marked"] == []
    # Its marker is vmw's: it can be deleted; nothing of it is left.
    assert cloud.get_instance(name).delete() == []
    assert name not in _vms()


def test_threads_launch_in_parallel_and_launch_many(cloud: VMWare) -> None:
    image = cloud.released_image("jammy")
    with ThreadPoolExecutor(max_workers=3) as pool:
        launched = list(pool.map(lambda _: cloud.launch(image, wait=False), range(3)))
    names = {i.name for i in launched}
    assert len(names) == 3
    many = cloud.launch_many(image, 3, wait=False)
    assert len({i.name for i in many} | names) == 6
    assert set(_vms()) >= names
    assert cloud.clean() == []
    assert not (set(_vms()) & names)


def test_stages_by_name_console_logs_and_another_key(
    cloud: VMWare, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmw")
    instance = cloud.launch("TEMPLATE-cloud-init-jammy", wait="ip", console=True)
    assert instance.ip == "127.0.0.1"
    # The engine's logs reach Python's logging, under "vmw".
    assert any(
        r.name.startswith("vmw.") and instance.name in r.getMessage() for r in caplog.records
    )
    assert instance.console_log() == "", "the guest wrote nothing to it yet"
    with pytest.raises(vmw.InvalidOptionError):
        cloud.launch("TEMPLATE-cloud-init-jammy", wait="later")
    with pytest.raises(vmw.NotSupportedError):
        cloud.launch("TEMPLATE-cloud-init-jammy", wait=False).console_log()
    # Another key from now on: its public half is what the next launch
    # injects.
    key = Path(cloud.key_pair.public_key_path)
    other = tmp_path / "other.pub"
    other.write_text(key.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "other").write_text(
        Path(cloud.key_pair.private_key_path).read_text(encoding="utf-8"), encoding="utf-8"
    )
    cloud.use_key(str(other), name="other")
    assert cloud.key_pair.public_key_path == str(other)
    assert cloud.key_pair.name == "other"
    assert cloud.clean() == []


def test_packages_go_through_apt_get_as_root(cloud: VMWare) -> None:
    # The peer's apt-get is a stand-in that prints its arguments back.
    instance = cloud.launch("TEMPLATE-cloud-init-jammy")
    installed = instance.install("hello cowsay")
    assert installed.ok, installed.stderr
    assert installed.stdout.endswith("install --yes --quiet hello cowsay"), installed
    assert instance.install(["hello"]).stdout.endswith("install --yes --quiet hello")
    updated = instance.update()
    assert "update --quiet" in updated.stdout and "dist-upgrade --yes --quiet" in updated.stdout
    assert cloud.clean() == []


def test_errors_carry_hints() -> None:
    err = vmw.RefusedError("refused")
    assert isinstance(err, vmw.PycloudlibException)
    assert err.hints == []
    assert str(err) == "refused"
