//! `vmw delete`: VMs by name in the configured folder or by absolute path;
//! the library checks vmw's marker right before each destroy and refuses
//! templates.

use vmw_cloud::Removal;

use crate::context::Context;
use crate::output::Report;

/// Runs `vmw delete NAME...`.
pub(super) async fn run(ctx: &Context, names: Vec<String>, force: bool) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    // Every name is checked before anything is deleted.
    let refs = names
        .iter()
        .map(|n| cloud.vm_ref(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(super::bad_name)?;
    let results = super::at_most(cloud.settings().concurrency, refs.iter(), |vm| {
        let cloud = cloud.clone();
        async move {
            let removal = if force {
                cloud.delete_vm_forced(vm.as_str()).await
            } else {
                cloud.delete_vm(vm.as_str()).await
            };
            removal.map(removal_word)
        }
    })
    .await;
    super::each(names, results, "delete", |name, result| {
        tracing::info!("{name}: {result}");
        (result.to_owned(), String::new())
    })
}

/// What a removal did, in a word.
pub(super) fn removal_word(r: Removal) -> &'static str {
    match r {
        Removal::Destroyed => "deleted",
        Removal::AlreadyGone => "already gone",
    }
}
