//! The commands other than `launch` and `config check`.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use camino::Utf8PathBuf;
use serde::Serialize;
use vmw_cloud::{Cloud, CloudError, Instance, Kind, Removal, TEMPLATE_PREFIX, VmRecord, WaitStage};
use vmw_cloud::{Cmd, ExecOptions, PowerState, ProcessGovc};

use crate::cli::{Command, ImageCommand, Wait};
use crate::context::Context;
use crate::error::{CliError, EXIT_FAILED, EXIT_USAGE};
use crate::output::{self, kind_word, power_word};
use crate::progress::Task;

/// Runs the command of the command line.
pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Launch(args) => crate::launch::run(ctx, args).await,
        Command::List { all_tags } => list(ctx, all_tags).await,
        Command::Ip { name } => ip(ctx, &name).await,
        Command::Start { names } => power(ctx, names, Power::Start).await,
        Command::Stop { names } => power(ctx, names, Power::Stop).await,
        Command::Restart {
            names,
            wait,
            wait_timeout,
        } => restart(ctx, names, wait, wait_timeout).await,
        Command::Delete { names, force } => delete(ctx, names, force).await,
        Command::Exec {
            name,
            stdin,
            sudo,
            command,
        } => exec(ctx, &name, stdin, sudo, command).await,
        Command::Ssh { name, args } => ssh(ctx, &name, args).await,
        Command::Push {
            name,
            local,
            remote,
        } => push(ctx, &name, local, &remote).await,
        Command::Pull {
            name,
            remote,
            local,
        } => pull(ctx, &name, &remote, local).await,
        Command::Snapshot { name, no_clean } => snapshot(ctx, &name, !no_clean).await,
        Command::Image(ImageCommand::List { all_tags }) => image_list(ctx, all_tags).await,
        Command::Image(ImageCommand::Delete { name, force }) => {
            image_delete(ctx, &name, force).await
        }
        Command::Image(ImageCommand::Check { names, all }) => {
            crate::image::check(ctx, &names, all).await
        }
        Command::Image(ImageCommand::Import {
            file,
            release,
            network,
            name,
            datastore,
            folder,
            replace,
            force,
            save_spec,
        }) => {
            crate::image::import(
                ctx,
                crate::image::ImportArgs {
                    file,
                    release,
                    network,
                    name,
                    datastore,
                    folder,
                    replace,
                    force,
                    save_spec,
                },
            )
            .await
        }
        Command::Clean { all_tags, yes } => clean(ctx, all_tags, yes).await,
        Command::Config(crate::cli::ConfigCommand::Check) => crate::check::run(ctx).await,
    }
}

/// A VM as `list` prints it.
#[derive(Debug, Serialize)]
struct ListedVm {
    name: String,
    path: String,
    kind: &'static str,
    tag: String,
    power_state: String,
    ip: Option<String>,
}

impl From<&VmRecord> for ListedVm {
    fn from(r: &VmRecord) -> Self {
        Self {
            name: r.name.clone(),
            path: r.path.to_string(),
            kind: kind_word(r.kind),
            tag: r.tag.clone(),
            power_state: power_word(&r.power_state),
            ip: r.ip.clone(),
        }
    }
}

fn describe_scope(ctx: &Context, all_tags: bool) -> String {
    if all_tags {
        "any tag".to_owned()
    } else if ctx.global.no_timestamp && ctx.global.tag.is_some() {
        format!("tag {}", ctx.base_tag())
    } else {
        format!("tag {} (and its timestamped forms)", ctx.base_tag())
    }
}

async fn list(ctx: &Context, all_tags: bool) -> anyhow::Result<ExitCode> {
    let scope = ctx.scope(all_tags)?;
    let cloud = ctx.cloud(None).await?;
    let records = cloud.list(&scope).await?;
    let vms: Vec<ListedVm> = records.iter().map(ListedVm::from).collect();
    if ctx.global.json {
        output::json(&vms)?;
    } else if vms.is_empty() {
        tracing::info!("no VMs made by vmw for {}", describe_scope(ctx, all_tags));
    } else {
        let rows: Vec<Vec<String>> = vms
            .iter()
            .map(|v| {
                vec![
                    v.name.clone(),
                    v.kind.to_owned(),
                    v.tag.clone(),
                    v.power_state.clone(),
                    v.ip.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        output::print(&output::table(
            &["NAME", "KIND", "TAG", "STATE", "IP"],
            &rows,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The instance `name`; a VM that does not exist is an error saying how
/// to find the right name.
async fn instance(cloud: &Cloud<ProcessGovc>, name: &str) -> anyhow::Result<Instance<ProcessGovc>> {
    match cloud.get_instance(name).await {
        Ok(i) => Ok(i),
        Err(CloudError::NoSuchVm { .. }) => Err(CliError::failed(
            format!("no VM named {name:?} in {}", cloud.config().folder),
            Some("`vmw list` shows the VMs vmw made".to_owned()),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Fails early when the VM is off: waiting for its address is pointless.
async fn require_on(instance: &Instance<ProcessGovc>) -> anyhow::Result<()> {
    let state = instance.power_state().await?;
    if state == PowerState::On {
        Ok(())
    } else {
        Err(CliError::failed(
            format!("VM {} is {}", instance.name(), power_word(&state)),
            Some(format!("start it with `vmw start {}`", instance.name())),
        )
        .into())
    }
}

#[derive(Debug, Serialize)]
struct NameIp {
    name: String,
    ip: String,
}

async fn ip(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(None).await?;
    let instance = instance(&cloud, name).await?;
    require_on(&instance).await?;
    let task = Task::new(name);
    task.step("waiting for an IP address");
    let ip = instance.ip().await;
    match &ip {
        Ok(ip) => task.done(&ip.to_string()),
        Err(_) => task.failed("no address"),
    }
    let ip = ip?.to_string();
    if ctx.global.json {
        output::json(&NameIp {
            name: name.to_owned(),
            ip,
        })?;
    } else {
        output::line(&ip)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, Debug)]
enum Power {
    Start,
    Stop,
}

/// What happened to one VM of a multi-VM command.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Prints the outcomes and fails when one failed.
fn finish(
    ctx: &Context,
    outcomes: Vec<Outcome>,
    errors: Vec<anyhow::Error>,
) -> anyhow::Result<ExitCode> {
    if ctx.global.json {
        output::json(&outcomes)?;
    }
    let failed = errors.len();
    let total = outcomes.len();
    for e in errors {
        crate::error::report(&e);
    }
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::failed(format!("{failed} of {total} failed"), None).into())
    }
}

/// The outcome of one result per VM (`ok` says what a success was), then
/// [`finish`]; `what` names the operation in error messages.
fn finish_each<T, E: Into<anyhow::Error>>(
    ctx: &Context,
    names: Vec<String>,
    results: Vec<Result<T, E>>,
    what: &str,
    mut ok: impl FnMut(&str, T) -> anyhow::Result<String>,
) -> anyhow::Result<ExitCode> {
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for (name, r) in names.into_iter().zip(results) {
        match r {
            Ok(v) => {
                let result = ok(&name, v)?;
                outcomes.push(Outcome {
                    name,
                    result,
                    error: None,
                });
            }
            Err(e) => {
                let e: anyhow::Error = e.into();
                outcomes.push(Outcome {
                    name: name.clone(),
                    result: "failed".to_owned(),
                    error: Some(e.to_string()),
                });
                errors.push(e.context(format!("{name}: {what} failed")));
            }
        }
    }
    finish(ctx, outcomes, errors)
}

async fn power(ctx: &Context, names: Vec<String>, op: Power) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(None).await?;
    let results = futures_util::future::join_all(names.iter().map(|name| {
        let cloud = cloud.clone();
        async move {
            let instance = instance(&cloud, name).await?;
            match op {
                Power::Start => instance.start().await?,
                Power::Stop => instance.shutdown().await?,
            }
            Ok::<_, anyhow::Error>(())
        }
    }))
    .await;
    let word = match op {
        Power::Start => "on",
        Power::Stop => "off",
    };
    finish_each(ctx, names, results, &format!("power {word}"), |name, ()| {
        tracing::info!("{name}: {word}");
        Ok(word.to_owned())
    })
}

async fn restart(
    ctx: &Context,
    names: Vec<String>,
    wait: Wait,
    wait_timeout: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(wait_timeout).await?;
    let stage: WaitStage = wait.into();
    let results = futures_util::future::join_all(names.iter().map(|name| {
        let cloud = cloud.clone();
        async move {
            let instance = instance(&cloud, name).await?;
            let task = Task::new(name.as_str());
            if stage == WaitStage::Ready {
                // The library's restart: when the guest answers, it waits
                // for a new boot id, not merely for an answer.
                task.step("restarting and waiting until ready");
                let ip = instance.restart().await?;
                task.done("restarted");
                return Ok::<_, anyhow::Error>(Some(ip));
            }
            task.step("powering off");
            instance.shutdown().await?;
            task.step("powering on");
            instance.start().await?;
            let mut ip = None;
            if stage >= WaitStage::Ip {
                task.step("waiting for an IP address");
                ip = Some(instance.ip().await?);
            }
            if stage >= WaitStage::Ssh {
                task.step("waiting for SSH");
                instance.wait_for(WaitStage::Ssh).await?;
            }
            if stage >= WaitStage::Ready {
                task.step("waiting for cloud-init to finish");
                instance.wait_for(WaitStage::Ready).await?;
            }
            task.done("restarted");
            Ok::<_, anyhow::Error>(ip)
        }
    }))
    .await;
    finish_each(ctx, names, results, "restart", |name, ip| {
        if !ctx.global.json {
            output::line(&format!(
                "{name} {}",
                ip.map_or_else(|| "-".to_owned(), |i| i.to_string())
            ))?;
        }
        Ok("restarted".to_owned())
    })
}

async fn delete(ctx: &Context, names: Vec<String>, force: bool) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(None).await?;
    // Every name is checked before anything is deleted.
    let refs = names
        .iter()
        .map(|n| cloud.vm_ref(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::usage(e.to_string(), None))?;
    let results = futures_util::future::join_all(refs.iter().map(|vm| {
        let cloud = cloud.clone();
        async move { cloud.delete_vm(vm.as_str(), force).await.map(removal_word) }
    }))
    .await;
    finish_each(ctx, names, results, "delete", |name, result| {
        tracing::info!("{name}: {result}");
        Ok(result.to_owned())
    })
}

#[derive(Debug, Serialize)]
struct ExecOutput {
    name: String,
    exit_status: Option<u32>,
    signal: Option<String>,
    stdout: String,
    stderr: String,
}

async fn exec(
    ctx: &Context,
    name: &str,
    forward_stdin: bool,
    sudo: bool,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let cmd = match command.as_slice() {
        [line] => Cmd::from(line.clone()),
        _ => Cmd::from(command),
    };
    let stdin = if forward_stdin {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| CliError::failed(format!("reading standard input: {e}"), None))?;
        Some(data)
    } else {
        None
    };
    let cloud = ctx.cloud(None).await?;
    let instance = instance(&cloud, name).await?;
    tracing::debug!("{name}: running {cmd}");
    let options = ExecOptions { sudo, stdin };
    let (exit_status, signal) = if ctx.global.json {
        let result = instance.execute_with(cmd, &options).await?;
        output::json(&ExecOutput {
            name: name.to_owned(),
            exit_status: result.exit_status,
            signal: result.signal.clone(),
            stdout: result.stdout.clone(),
            stderr: result.stderr.clone(),
        })?;
        (result.exit_status, result.signal)
    } else {
        // Output is streamed as the command writes it.
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        instance
            .execute_streaming(cmd, &options, &mut out, &mut err)
            .await?
    };
    let code = match (exit_status, &signal) {
        (Some(c), _) => u8::try_from(c).unwrap_or(u8::MAX),
        (None, Some(sig)) => {
            tracing::warn!("{name}: the command was killed by signal {sig}");
            u8::MAX
        }
        (None, None) => u8::MAX,
    };
    Ok(ExitCode::from(code))
}

async fn ssh(ctx: &Context, name: &str, args: Vec<String>) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let cloud = ctx.cloud(None).await?;
    let instance = instance(&cloud, name).await?;
    require_on(&instance).await?;
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
                instance.wait_for(WaitStage::Ssh).await?;
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
    let program =
        vmw_config::env::var(vmw_config::env::VMW_SSH).unwrap_or_else(|| "ssh".to_owned());
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

#[derive(Debug, Serialize)]
struct Copied {
    name: String,
    local: Utf8PathBuf,
    remote: String,
}

async fn push(
    ctx: &Context,
    name: &str,
    local: Utf8PathBuf,
    remote: &str,
) -> anyhow::Result<ExitCode> {
    if !local.is_file() {
        return Err(CliError::usage(format!("{local} is not a file"), None).into());
    }
    let cloud = ctx.cloud(None).await?;
    let instance = instance(&cloud, name).await?;
    instance.push_file(&local, remote).await?;
    tracing::info!("{name}: copied {local} to {remote}");
    if ctx.global.json {
        output::json(&Copied {
            name: name.to_owned(),
            local,
            remote: remote.to_owned(),
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull(
    ctx: &Context,
    name: &str,
    remote: &str,
    local: Utf8PathBuf,
) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(None).await?;
    let instance = instance(&cloud, name).await?;
    instance.pull_file(remote, &local).await?;
    tracing::info!("{name}: copied {remote} to {local}");
    if ctx.global.json {
        output::json(&Copied {
            name: name.to_owned(),
            local,
            remote: remote.to_owned(),
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct Snapshot {
    instance: String,
    image: String,
}

async fn snapshot(ctx: &Context, name: &str, clean: bool) -> anyhow::Result<ExitCode> {
    // The image gets the tag of the instance it is made from (the library
    // reads it from the instance's marker).
    let cloud = ctx.cloud(None).await?;
    let instance = instance(&cloud, name).await?;
    let task = Task::new(name);
    task.step(if clean {
        "cleaning the guest, then cloning it into an image"
    } else {
        "cloning into an image"
    });
    // A signal cancels the clone: it is awaited and removed (vCenter
    // finishes a clone it received even when vmw is gone).
    let mut stops = crate::launch::Stops::listen()?;
    let cancel = vmw_cloud::CancellationToken::new();
    let snapshot = cloud.snapshot_with(&instance, clean, Some(&cancel));
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
    let image = image?;
    if ctx.global.json {
        output::json(&Snapshot {
            instance: name.to_owned(),
            image: image.name,
        })?;
    } else {
        output::line(&image.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ListedImage {
    name: String,
    kind: &'static str,
    tag: Option<String>,
}

async fn image_list(ctx: &Context, all_tags: bool) -> anyhow::Result<ExitCode> {
    let scope = ctx.scope(all_tags)?;
    let cloud = ctx.cloud(None).await?;
    let mut images: Vec<ListedImage> = cloud
        .releases()
        .await?
        .into_iter()
        .map(|r| ListedImage {
            name: format!("{TEMPLATE_PREFIX}{r}"),
            kind: "template",
            tag: None,
        })
        .collect();
    images.extend(
        cloud
            .list(&scope)
            .await?
            .into_iter()
            .filter(|r| r.kind == Kind::Image)
            .map(|r| ListedImage {
                name: r.name,
                kind: "image",
                tag: Some(r.tag),
            }),
    );
    if ctx.global.json {
        output::json(&images)?;
    } else {
        let rows: Vec<Vec<String>> = images
            .iter()
            .map(|i| {
                vec![
                    i.name.clone(),
                    i.kind.to_owned(),
                    i.tag.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        output::print(&output::table(&["NAME", "KIND", "TAG"], &rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn image_delete(ctx: &Context, name: &str, force: bool) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(None).await?;
    let vm = cloud
        .vm_ref(name)
        .map_err(|e| CliError::usage(e.to_string(), None))?;
    let result = removal_word(cloud.delete_image(vm.as_str(), force).await?);
    tracing::info!("{vm}: {result}");
    if ctx.global.json {
        output::json(&Outcome {
            name: vm.to_string(),
            result: result.to_owned(),
            error: None,
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn removal_word(r: Removal) -> &'static str {
    match r {
        Removal::Destroyed => "deleted",
        Removal::AlreadyGone => "already gone",
    }
}

/// What `clean` lists, and then deletes exactly.
#[derive(Debug, Serialize)]
struct PlannedVm {
    name: String,
    path: String,
    kind: &'static str,
    tag: String,
    power_state: String,
}

#[derive(Debug, Serialize)]
struct Cleaned {
    /// The VMs listed (and confirmed).
    planned: Vec<PlannedVm>,
    /// The paths deleted.
    removed: Vec<String>,
}

async fn clean(ctx: &Context, all_tags: bool, yes: bool) -> anyhow::Result<ExitCode> {
    let scope = ctx.scope(all_tags)?;
    let cloud = ctx.cloud(None).await?;
    let records = cloud.list(&scope).await?;
    if records.is_empty() {
        tracing::info!(
            "nothing to clean: no VMs made by vmw for {}",
            describe_scope(ctx, all_tags)
        );
        if ctx.global.json {
            output::json(&Cleaned {
                planned: Vec::new(),
                removed: Vec::new(),
            })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                kind_word(r.kind).to_owned(),
                r.tag.clone(),
                power_word(&r.power_state),
            ]
        })
        .collect();
    let listing = output::table(&["NAME", "KIND", "TAG", "STATE"], &rows);
    crate::progress::suspend(|| {
        let _ = write!(
            std::io::stderr(),
            "{} VM(s) made by vmw for {}:\n{listing}",
            records.len(),
            describe_scope(ctx, all_tags)
        );
    });
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError {
                message: format!(
                    "refusing to delete {} VM(s) without --yes: standard input is not a terminal, so vmw cannot ask",
                    records.len()
                ),
                hint: Some("run `vmw clean --yes` to delete them".to_owned()),
                code: EXIT_USAGE,
            }
            .into());
        }
        eprint!("delete them? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            eprintln!("nothing deleted");
            return Err(CliError::silent(EXIT_FAILED).into());
        }
    }
    let task = Task::new("clean");
    task.step(&format!("deleting {} VM(s)", records.len()));
    // Exactly what was listed (and confirmed): each VM is checked to be the
    // object listed, still with vmw's marker of the tag listed.
    match cloud.delete_listed(&records).await {
        Ok(removed) => {
            task.done(&format!("deleted {} VM(s)", removed.len()));
            if ctx.global.json {
                let planned = records
                    .iter()
                    .map(|r| PlannedVm {
                        name: r.name.clone(),
                        path: r.path.to_string(),
                        kind: kind_word(r.kind),
                        tag: r.tag.clone(),
                        power_state: power_word(&r.power_state),
                    })
                    .collect();
                output::json(&Cleaned {
                    planned,
                    removed: removed.iter().map(ToString::to_string).collect(),
                })?;
            } else {
                let mut text = String::new();
                for vm in &removed {
                    text.push_str(vm.name());
                    text.push('\n');
                }
                output::print(&text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            task.failed("some VMs remain");
            Err(e.into())
        }
    }
}
