//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_yaml_ng::{Mapping, Value};
use vmw_userdata::{AUTHORIZED_KEYS, PublicKey};

/// Real keys made with ssh-keygen for these tests (their private halves were discarded).
pub const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6zb9yfhE9uGj1F+yXMGYabYEWN1pRUMCvO5vbVl4a8 judge@vmw";
pub const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDhgkYhs5Uwr2x1lNULXTu9eTc5NToRX2vm7Cb2XmviGbSB/yONtVfJx7z+5sVtwNWEAvwmWAe4/cRFj0aQr695Ps6XXhArp3E3H6RqPYy8aZ87sLyIiIr/GsZa3vMtwfLsxjam1ctiY58+wzzBbCSWvs5w6Gg5If7FLqkoKtskBzIHBEUwdmI0s8BBhPYWHPSgk2cOAF4g9BRr6JD4oJNYgzjnNzQbK3bQl40q2gCuOH18HRNIJzGEou2mYQbQ2v3cjpzBwExXHuNiK7nRHRjFWx3ocRQgaGfwlmMox8eKCFFMUTX1l/SnGVpuGfLrCoIk2g/I5oiAEL5SOj51wQd3 rsa@vmw";
pub const ECDSA: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBMBOL1CkkuGnATXR2dNl3oI2aWDFWVTiZ87inVI1k/G1UfI3FAe+2DmhkDm9PoflCxHGd5xnmkCCryGdHYanTSxQqF3+/25GxOAzLwPP7F7DyJ8Af3XZZ7yyZonKup4YLQ==";

pub fn key() -> PublicKey {
    PublicKey::parse(ED25519).expect("test key parses")
}

/// Parses YAML text into a value.
pub fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

/// The mapping `input` with `key` appended to its `ssh_authorized_keys` list (created when
/// absent): what every injection into a cloud-config must mean.
pub fn plus_key(input: &Value, key: &PublicKey) -> Value {
    let mut mapping = match input {
        Value::Mapping(m) => m.clone(),
        Value::Null => Mapping::new(),
        other => panic!("not a mapping: {other:?}"),
    };
    let mut list = match mapping.get(AUTHORIZED_KEYS) {
        Some(Value::Sequence(items)) => items.clone(),
        _ => Vec::new(),
    };
    list.push(Value::from(key.to_string()));
    mapping.insert(Value::from(AUTHORIZED_KEYS), Value::Sequence(list));
    Value::Mapping(mapping)
}

/// Real-world `#cloud-config` documents: users, write_files with multi-line strings,
/// runcmd lists, comments everywhere.
pub const WEB_SERVER: &str = r#"#cloud-config
# Web server bootstrap: keep these comments!
hostname: web-01
manage_etc_hosts: true

users:
  - default
  - name: deploy
    gecos: Deploy User
    groups: [adm, sudo]
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKeyDeployKeyDeployKeyDeployKey0 deploy@ci

ssh_authorized_keys:
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQExistingExistingExistingExisting ops@bastion   # ops team
  # the second key is the backup
  - "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYBackup backup"

package_update: true
packages:
  - nginx
  - [curl, "7.88.1-10+deb12u5"]

write_files:
  - path: /etc/nginx/sites-available/default
    permissions: "0644"
    owner: root:root
    content: |
      server {
          listen 80 default_server;
          root /var/www/html;
          # literal block: keep indentation and "quotes"
          location / { try_files $uri $uri/ =404; }
      }
  - path: /etc/motd
    content: >
      Folded text that
      becomes one line.
    append: true
  - path: /opt/empty-keep
    content: |+
      trailing blank lines kept

runcmd:
  - [systemctl, enable, --now, nginx]
  - echo "done at $(date)" >> /var/log/bootstrap.log
  - |
    for i in 1 2 3; do
      echo "step $i"
    done

final_message: "Up after $UPTIME seconds"
"#;

/// A document with no `ssh_authorized_keys` at all.
pub const NO_KEYS: &str = r#"#cloud-config
# Only packages and a timezone.
timezone: Europe/Berlin
packages: [htop, tmux]
bootcmd:
  - echo bootcmd >> /run/boot.log
"#;

/// A jinja template whose body is YAML before rendering.
pub const JINJA: &str = r#"## template: jinja
#cloud-config
# rendered with the instance data
runcmd:
  - echo "booted {{ v1.local_hostname }} on {{ v1.cloud_name }}" > /run/hello
ssh_authorized_keys:
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQExistingExistingExistingExisting ops@bastion
"#;

/// A jinja template with block tags (not YAML before rendering).
pub const JINJA_BLOCKS: &str = r#"## template: jinja
#cloud-config
{% if v1.local_hostname.startswith('judge') %}
packages: [jq]
{% else %}
packages: [never]
{% endif %}
write_files:
  - path: /run/name
    content: "{{ v1.local_hostname }}"
"#;

/// A shell script with non-ASCII text in it.
pub const SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
# Grüße: non-ASCII must survive
echo 'hello from the first boot' > /etc/motd
cat > /etc/app.conf <<'EOF'
  indented --not-a-boundary
EOF
"#;

/// A multipart document as `cloud-init devel make-mime` would write it: a cloud-config part
/// with its own key and a shell script part.
pub const MULTIPART: &str = "Content-Type: multipart/mixed; boundary=\"===============4291038100093149247==\"\n\
MIME-Version: 1.0\n\
Number-Attachments: 2\n\
\n\
--===============4291038100093149247==\n\
Content-Type: text/cloud-config; charset=\"us-ascii\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: 7bit\n\
Content-Disposition: attachment; filename=\"config.yaml\"\n\
\n\
#cloud-config\n\
packages: [git]\n\
ssh_authorized_keys:\n\
  - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQExistingExistingExistingExisting ops@bastion\n\
\n\
--===============4291038100093149247==\n\
Content-Type: text/x-shellscript; charset=\"us-ascii\"\n\
MIME-Version: 1.0\n\
Content-Transfer-Encoding: 7bit\n\
Content-Disposition: attachment; filename=\"setup.sh\"\n\
\n\
#!/bin/sh\n\
echo multipart > /run/multipart\n\
\n\
--===============4291038100093149247==--\n";
