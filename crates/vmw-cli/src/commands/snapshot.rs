//! `vmw snapshot`: an instance cloned into an image (the library gives it
//! the instance's tag); a signal cancels the clone, which is then awaited
//! and removed.

use std::fmt;

use serde::Serialize;

use crate::context::Context;
use crate::error::CliError;
use crate::output::Report;
use crate::signals::Stops;

#[derive(Debug, Serialize)]
struct Snapshot {
    instance: String,
    image: String,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.image)
    }
}

/// Runs `vmw snapshot NAME`.
pub(super) async fn run(ctx: &Context, name: &str, clean: bool) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    let task = ctx.out.task(name);
    task.step(if clean {
        "cleaning the guest, then cloning it into an image"
    } else {
        "cloning into an image"
    });
    // A signal cancels the clone: it is awaited and removed (vCenter
    // finishes a clone it received even when vmw is gone).
    let mut stops = Stops::listen()?;
    let cancel = vmw_cloud::CancellationToken::new();
    let cancellable = cloud.cancel_on(&cancel);
    let snapshot = cancellable.snapshot(&instance, clean);
    tokio::pin!(snapshot);
    let mut signalled = None;
    let image = loop {
        tokio::select! {
            image = &mut snapshot => break image,
            (code, signal) = stops.next() => {
                if signalled.is_some() {
                    return Err(CliError {
                        message: format!("interrupted ({signal} again): stopped waiting; the image may be left"),
                        hint: Some(format!("`vmw image delete {name}-image` removes it")),
                        code,
                    }
                    .into());
                }
                task.step("interrupted: removing the image being made");
                cancel.cancel();
                signalled = Some((code, signal));
            }
        }
    };
    if let Some((code, signal)) = signalled {
        task.failed("interrupted");
        let message = match &image {
            Err(e) => format!("interrupted ({signal}): {e}"),
            Ok(i) => format!("interrupted ({signal}) after the image {i} was made"),
        };
        return Err(CliError {
            message,
            hint: None,
            code,
        }
        .into());
    }
    match &image {
        Ok(i) => task.done(&format!("image {i}")),
        Err(_) => task.failed("no image"),
    }
    Report::of(&Snapshot {
        instance: name.to_owned(),
        image: image?.name().to_owned(),
    })
}
