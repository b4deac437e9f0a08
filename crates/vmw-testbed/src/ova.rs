//! Small OVA files shaped like Ubuntu's cloud images, for import tests.
//!
//! The descriptor has one network, the six OVF properties Ubuntu's images
//! carry (instance-id, hostname, seedfrom, public-keys, user-data, password)
//! and one disk; the disk is a streamOptimized VMDK made by `qemu-img`
//! (Debian's qemu-utils). The OVA is a tar with the descriptor first.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::TestbedError;

/// The OVF network name of the test appliances.
pub const OVF_NETWORK: &str = "VM Network";

fn fail(reason: String) -> TestbedError {
    TestbedError::Startup {
        reason,
        stderr: String::new(),
    }
}

fn run(cmd: &mut Command) -> Result<(), TestbedError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| fail(format!("could not run {shown}: {e} (qemu-img is in Debian's qemu-utils; `cargo xtask tools` installs it)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The OVF descriptor of an appliance named `name` whose disk file is
/// `disk` (`disk_size` bytes, 4 MiB capacity).
pub fn descriptor(name: &str, disk: &str, disk_size: u64) -> String {
    let property = |key: &str, value: &str| {
        format!(
            r#"      <Property ovf:key="{key}" ovf:type="string" ovf:userConfigurable="true" ovf:value="{value}"><Label>{key}</Label></Property>
"#
        )
    };
    let properties: String = [
        ("instance-id", "id-ovf"),
        ("hostname", "ubuntuguest"),
        ("seedfrom", ""),
        ("public-keys", ""),
        ("user-data", ""),
        ("password", ""),
    ]
    .iter()
    .map(|(k, v)| property(k, v))
    .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href="{disk}" ovf:id="file1" ovf:size="{disk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:capacity="4194304" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Networks</Info>
    <Network ovf:name="{OVF_NETWORK}"><Description>The guest network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A test appliance shaped like an Ubuntu cloud image</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="94" vmw:osType="ubuntu64Guest"><Info>Guest OS</Info></OperatingSystemSection>
    <ProductSection ovf:required="false">
      <Info>cloud-init</Info>
{properties}    </ProductSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>1 virtual CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>1024 MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>disk0</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>{OVF_NETWORK}</rasd:Connection><rasd:ElementName>ethernet0</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// Writes `<dir>/<name>.ova` (and the `.ovf` and `.vmdk` beside it) and
/// returns the OVA's path.
pub fn make_ova(dir: &Utf8Path, name: &str) -> Result<Utf8PathBuf, TestbedError> {
    let raw = dir.join(format!("{name}.raw"));
    let disk_name = format!("{name}-disk1.vmdk");
    let disk = dir.join(&disk_name);
    run(Command::new("qemu-img").args(["create", "-q", "-f", "raw", raw.as_str(), "4M"]))?;
    run(Command::new("qemu-img").args([
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        raw.as_str(),
        disk.as_str(),
    ]))?;
    let size = std::fs::metadata(&disk)
        .map_err(|e| fail(format!("{disk}: {e}")))?
        .len();
    let ovf_name = format!("{name}.ovf");
    std::fs::write(dir.join(&ovf_name), descriptor(name, &disk_name, size))
        .map_err(|e| fail(format!("writing {ovf_name}: {e}")))?;
    let ova = dir.join(format!("{name}.ova"));
    // The descriptor must come first in an OVA.
    run(Command::new("tar")
        .current_dir(dir)
        .args(["-cf", ova.as_str(), &ovf_name, &disk_name]))?;
    Ok(ova)
}
