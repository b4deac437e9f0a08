//! Per-VM instance metadata, as cloud-init's VMware datasource reads it.

use serde_yaml_ng::{Mapping, Value};

use crate::error::UserDataError;

/// The metadata key that names the instance; a new value makes cloud-init run its
/// per-instance steps again.
pub const INSTANCE_ID: &str = "instance-id";

/// The metadata key that sets the guest's hostname.
pub const LOCAL_HOSTNAME: &str = "local-hostname";

/// The metadata of one VM: `instance-id` and `local-hostname`, then any extra entries (a
/// `network` section, for instance).
///
/// ```
/// use serde_yaml_ng::{Mapping, Value};
/// use vmw_userdata::Metadata;
///
/// let network: Mapping = serde_yaml_ng::from_str("network:\n  version: 2\n").unwrap();
/// let metadata = Metadata::for_vm("ci-0612-1").extra(network);
/// assert_eq!(
///     metadata.to_yaml()?,
///     "instance-id: ci-0612-1\nlocal-hostname: ci-0612-1\nnetwork:\n  version: 2\n",
/// );
/// # Ok::<(), vmw_userdata::UserDataError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    instance_id: String,
    local_hostname: String,
    extra: Mapping,
}

impl Metadata {
    /// Metadata for the VM called `name`: both `instance-id` and `local-hostname` are the
    /// name, so every VM gets its own instance id. The name is used as it is: make it a valid
    /// hostname (lowercase letters, digits, hyphens) or set one with
    /// [`with_local_hostname`](Self::with_local_hostname).
    pub fn for_vm(name: &str) -> Self {
        Self {
            instance_id: name.to_owned(),
            local_hostname: name.to_owned(),
            extra: Mapping::new(),
        }
    }

    /// Replaces the instance id.
    #[must_use]
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = instance_id.into();
        self
    }

    /// Replaces the hostname.
    #[must_use]
    pub fn with_local_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.local_hostname = hostname.into();
        self
    }

    /// Adds extra top-level entries; an entry of a later call replaces one of the same name.
    /// `instance-id` and `local-hostname` cannot be set this way ([`to_yaml`](Self::to_yaml)
    /// refuses them).
    #[must_use]
    pub fn extra(mut self, entries: Mapping) -> Self {
        for (key, value) in entries {
            self.extra.insert(key, value);
        }
        self
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The hostname.
    pub fn local_hostname(&self) -> &str {
        &self.local_hostname
    }

    /// The extra entries.
    pub fn extra_entries(&self) -> &Mapping {
        &self.extra
    }

    /// The whole metadata as one mapping, `instance-id` and `local-hostname` first.
    ///
    /// # Errors
    /// [`UserDataError::ReservedMetadataKey`] when the extra entries set `instance-id` or
    /// `local-hostname`; [`UserDataError::EmptyMetadataValue`] when either is empty.
    pub fn to_mapping(&self) -> Result<Mapping, UserDataError> {
        for (key, setter, value) in [
            (INSTANCE_ID, "with_instance_id", &self.instance_id),
            (LOCAL_HOSTNAME, "with_local_hostname", &self.local_hostname),
        ] {
            if self.extra.contains_key(key) {
                return Err(UserDataError::ReservedMetadataKey { key, setter });
            }
            if value.trim().is_empty() {
                return Err(UserDataError::EmptyMetadataValue { key, setter });
            }
        }
        let mut out = Mapping::new();
        out.insert(
            Value::from(INSTANCE_ID),
            Value::from(self.instance_id.clone()),
        );
        out.insert(
            Value::from(LOCAL_HOSTNAME),
            Value::from(self.local_hostname.clone()),
        );
        for (key, value) in &self.extra {
            out.insert(key.clone(), value.clone());
        }
        Ok(out)
    }

    /// The metadata as a YAML document.
    ///
    /// # Errors
    /// As [`to_mapping`](Self::to_mapping), and [`UserDataError::MetadataYaml`] when an extra
    /// value cannot be written as YAML.
    pub fn to_yaml(&self) -> Result<String, UserDataError> {
        serde_yaml_ng::to_string(&self.to_mapping()?).map_err(|err| UserDataError::MetadataYaml {
            reason: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_both_names_from_the_vm() {
        let yaml = Metadata::for_vm("vm-a-1").to_yaml().unwrap();
        assert_eq!(yaml, "instance-id: vm-a-1\nlocal-hostname: vm-a-1\n");
        let other = Metadata::for_vm("vm-a-2").to_yaml().unwrap();
        assert_ne!(yaml, other);
    }

    #[test]
    fn setters_and_extra_merge() {
        let first: Mapping = serde_yaml_ng::from_str("a: 1\nb: 2\n").unwrap();
        let second: Mapping = serde_yaml_ng::from_str("b: 3\n").unwrap();
        let metadata = Metadata::for_vm("x")
            .with_instance_id("id-1")
            .with_local_hostname("host")
            .extra(first)
            .extra(second);
        assert_eq!(
            metadata.to_yaml().unwrap(),
            "instance-id: id-1\nlocal-hostname: host\na: 1\nb: 3\n"
        );
    }

    #[test]
    fn refuses_reserved_and_empty() {
        let extra: Mapping = serde_yaml_ng::from_str("instance-id: other\n").unwrap();
        let err = Metadata::for_vm("x").extra(extra).to_yaml().unwrap_err();
        let hint = err.hint_text().unwrap_or_default();
        assert!(hint.contains("with_instance_id"), "{err}: {hint}");
        let err = Metadata::for_vm(" ").to_yaml().unwrap_err();
        assert!(
            matches!(err, UserDataError::EmptyMetadataValue { .. }),
            "{err}"
        );
    }
}
