"""Run cloud-init's own init-stage pipeline on guestinfo values and report the outcome.

The guestinfo values arrive through the environment, exactly as cloud-init's
VMware datasource reads them in its environment-variable transport
(VMX_GUESTINFO=1 plus VMX_GUESTINFO_METADATA, VMX_GUESTINFO_USERDATA, their
_ENCODING companions, and optionally VMX_GUESTINFO_VENDORDATA).

Usage: python3 judge.py WORKDIR

WORKDIR is an empty scratch folder; cloud-init's state (/var/lib/cloud and
/run/cloud-init in a real guest) is kept beneath it. The script prints one
JSON object on stdout:

  version              cloud-init's version string
  datasource           the datasource class cloud-init settled on
  data_access_method   how that datasource read its data ("envvar" expected)
  instance_id          the instance id cloud-init derived
  local_hostname       the hostname from the metadata
  metadata             the metadata mapping as cloud-init parsed it
  userdata_raw         the decoded user data, as text
  cloud_config         the merged cloud-config that cloud-init's modules
                       would run with (None when no cloud-config part existed)
  vendor_cloud_config  the same for vendor data
  scripts              {file name: text} of user scripts cloud-init stored
  warnings             warning-level log records emitted along the way

It exits non-zero when cloud-init cannot be imported or does not pick the
VMware datasource; assertions on the outcome are left to the caller.
"""

import copy
import json
import logging
import os
import sys


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append("%s: %s" % (record.name, record.getMessage()))


def _load_yaml_file(path):
    import yaml

    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle.read())


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: judge.py WORKDIR\n")
        return 2
    workdir = os.path.abspath(argv[1])

    try:
        from cloudinit import settings, sources, stages, util, version
    except ImportError as err:
        sys.stderr.write(
            "cannot import cloud-init (%s); PYTHONPATH=%r\n"
            % (err, os.environ.get("PYTHONPATH"))
        )
        return 3

    collector = _Collect()
    logging.getLogger().addHandler(collector)
    logging.getLogger().setLevel(logging.DEBUG)

    cloud_dir = os.path.join(workdir, "var-lib-cloud")
    run_dir = os.path.join(workdir, "run-cloud-init")

    # A fixed system configuration instead of /etc/cloud: the VMware
    # datasource only, every path under the scratch folder, no log file, and
    # cloud-init's built-in defaults beneath (vendor data enabled, ...).
    # cloud-init drops and re-reads its configuration at several points, so
    # the reader itself is replaced rather than the cached value.
    system_cfg = util.mergemanydict(
        [
            {
                "datasource_list": ["VMware"],
                "def_log_file": "",
                "system_info": {
                    "distro": "debian",
                    "paths": {"cloud_dir": cloud_dir, "run_dir": run_dir},
                },
            },
            copy.deepcopy(settings.CFG_BUILTIN),
        ]
    )
    init = stages.Init(ds_deps=[sources.DEP_FILESYSTEM])
    init._read_cfg = lambda _extra_fns=None: copy.deepcopy(system_cfg)
    init.initialize()
    datasource = init.fetch()
    name = type(datasource).__name__
    if name != "DataSourceVMware":
        sys.stderr.write("cloud-init picked %s, not the VMware datasource\n" % name)
        return 4
    init.instancify()
    init.update()

    paths = init.paths
    cloud_config_path = paths.get_ipath("cloud_config")
    vendor_config_path = paths.get_ipath("vendor_cloud_config")
    scripts_dir = paths.get_ipath_cur("scripts")

    init.consume_data(settings.PER_INSTANCE)

    scripts = {}
    if scripts_dir and os.path.isdir(scripts_dir):
        for entry in sorted(os.listdir(scripts_dir)):
            full = os.path.join(scripts_dir, entry)
            if os.path.isfile(full):
                with open(full, encoding="utf-8", errors="replace") as handle:
                    scripts[entry] = handle.read()

    raw = datasource.get_userdata_raw()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")

    hostname = datasource.get_hostname(metadata_only=True)
    report = {
        "version": version.version_string(),
        "datasource": name,
        "data_access_method": datasource.data_access_method,
        "instance_id": datasource.get_instance_id(),
        "local_hostname": getattr(hostname, "hostname", hostname),
        "metadata": datasource.metadata,
        "userdata_raw": raw,
        "cloud_config": _load_yaml_file(cloud_config_path),
        "vendor_cloud_config": _load_yaml_file(vendor_config_path),
        "scripts": scripts,
        "warnings": collector.records,
    }
    json.dump(report, sys.stdout, default=str, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
