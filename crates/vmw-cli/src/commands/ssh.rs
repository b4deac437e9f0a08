//! `vmw ssh`: an interactive session through the system's OpenSSH client,
//! with vmw's key, user and port, and strict host key checking against
//! vmw's own store. This is the one place the CLI starts a process.

use vmw_cloud::WaitStage;
use vmw_config::env;

use crate::context::Context;
use crate::error::CliError;
use crate::output::Report;

/// Runs `vmw ssh NAME [-- ARGS...]`: on success the process becomes ssh.
pub(super) async fn run(ctx: &Context, name: &str, args: Vec<String>) -> anyhow::Result<Report> {
    use std::os::unix::process::CommandExt;
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    super::require_on(&instance).await?;
    let ip = instance.ip().await?;
    let ssh = instance.ssh_config();
    // Strict host key checking against vmw's own store, by the VM's
    // identity: the first connection (made here if vmw never connected to
    // this VM) pins the key.
    let host_key_options = match instance.known_hosts() {
        Some(store) => {
            let identity = instance.host_key_identity().to_owned();
            let known = {
                let store = store.clone();
                let identity = identity.clone();
                tokio::task::spawn_blocking(move || store.get(&identity))
                    .await
                    .map_err(anyhow::Error::from)??
            };
            if known.is_none() {
                instance.wait_until(WaitStage::Ssh).await?;
            }
            store.openssh_options(&identity)
        }
        None => vec![
            "-o".to_owned(),
            "StrictHostKeyChecking=no".to_owned(),
            "-o".to_owned(),
            "UserKnownHostsFile=/dev/null".to_owned(),
        ],
    };
    let host = match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    };
    let program = ctx
        .env
        .get(env::VMW_SSH)
        .map_or_else(|| "ssh".to_owned(), str::to_owned);
    let mut command = std::process::Command::new(&program);
    command
        .arg("-i")
        .arg(cloud.key_pair().private_path.as_str())
        .args(["-p", &ssh.port.to_string()])
        .args(&host_key_options)
        .args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"])
        .arg(format!("{}@{host}", ssh.user))
        .args(&args);
    tracing::debug!("running {program} for {name} at {host}:{}", ssh.port);
    let err = command.exec();
    Err(CliError::failed(
        format!("could not run {program}: {err}"),
        Some("install OpenSSH's client (`ssh`), or name one with VMW_SSH".to_owned()),
    )
    .into())
}
