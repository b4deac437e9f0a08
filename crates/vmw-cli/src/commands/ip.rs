//! `vmw ip`: an instance's address, waiting for one.

use std::fmt;

use serde::Serialize;

use crate::context::Context;
use crate::output::Report;

#[derive(Debug, Serialize)]
struct NameIp {
    name: String,
    ip: String,
}

impl fmt::Display for NameIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.ip)
    }
}

/// Runs `vmw ip NAME`.
pub(super) async fn run(ctx: &Context, name: &str) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    super::require_on(&instance).await?;
    let task = ctx.out.task(name);
    task.step("waiting for an IP address");
    let ip = instance.ip().await;
    match &ip {
        Ok(ip) => task.done(&ip.to_string()),
        Err(_) => task.failed("no address"),
    }
    Report::of(&NameIp {
        name: name.to_owned(),
        ip: ip?.to_string(),
    })
}
