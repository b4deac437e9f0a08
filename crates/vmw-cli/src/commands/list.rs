//! `vmw list`: the instances and images vmw made, with power state and IP.

use std::fmt;

use serde::Serialize;
use vmw_cloud::VmRecord;

use crate::context::Context;
use crate::output::{Report, or_dash, table_of};

/// A VM as `list` prints it.
#[derive(Debug, Serialize)]
struct ListedVm {
    #[serde(flatten)]
    vm: super::Vm,
    ip: Option<String>,
}

impl From<&VmRecord> for ListedVm {
    fn from(r: &VmRecord) -> Self {
        Self {
            vm: r.into(),
            ip: r.ip.clone(),
        }
    }
}

/// The VMs, as a table (nothing when there are none).
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Listing(Vec<ListedVm>);

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&table_of(
            &["NAME", "KIND", "TAG", "STATE", "IP"],
            &self.0,
            |v| {
                let mut row = v.vm.row();
                row.push(or_dash(v.ip.as_ref()));
                row
            },
        ))
    }
}

/// Runs `vmw list`.
pub(super) async fn run(ctx: &Context, all_tags: bool) -> anyhow::Result<Report> {
    let scope = ctx.scope(all_tags)?;
    let cloud = ctx.cloud(None).await?;
    let records = cloud.list(&scope).await?;
    if records.is_empty() && !ctx.out.json() {
        tracing::info!(
            "no VMs made by vmw for {}",
            super::describe_scope(ctx, all_tags)
        );
    }
    Report::of(&Listing(records.iter().map(ListedVm::from).collect()))
}
