//! `vmw image list|delete|import|check`: the source templates and the
//! images vmw made; importing a template and checking the five
//! requirements of source VMs.

use std::fmt;

use serde::Serialize;
use vmw_cloud::{Check, Kind, TEMPLATE_PREFIX, TemplateImport, TemplateReport};

use crate::cli::ImportArgs;
use crate::context::Context;
use crate::error::{CliError, EXIT_FAILED};
use crate::output::{Lines, Report, or_dash, table};

#[derive(Debug, Serialize)]
struct ListedImage {
    name: String,
    kind: &'static str,
    tag: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Images(Vec<ListedImage>);

impl fmt::Display for Images {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|i| vec![i.name.clone(), i.kind.to_owned(), or_dash(i.tag.as_ref())])
            .collect();
        f.write_str(&table(&["NAME", "KIND", "TAG"], &rows))
    }
}

/// Runs `vmw image list`.
pub(super) async fn list(ctx: &Context, all_tags: bool) -> anyhow::Result<Report> {
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
    Report::of(&Images(images))
}

#[derive(Debug, Serialize)]
struct Deleted {
    name: String,
    result: &'static str,
}

impl fmt::Display for Deleted {
    /// Nothing on stdout: the deletion is logged.
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// Runs `vmw image delete NAME`.
pub(super) async fn delete(ctx: &Context, name: &str, force: bool) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let vm = cloud.vm_ref(name).map_err(super::bad_name)?;
    let removal = if force {
        cloud.delete_vm_forced(vm.as_str()).await?
    } else {
        cloud
            .delete_image(&vmw_cloud::Image::at(vm.clone()))
            .await?
    };
    let result = super::delete::removal_word(removal);
    tracing::info!("{vm}: {result}");
    Report::of(&Deleted {
        name: vm.to_string(),
        result,
    })
}

/// One requirement, as printed.
#[derive(Debug, Serialize)]
struct CheckOut {
    number: usize,
    requirement: String,
    passed: bool,
    observed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// A source VM's report, as printed.
#[derive(Debug, Serialize)]
struct ReportOut {
    name: String,
    path: String,
    ok: bool,
    checks: Vec<CheckOut>,
}

impl From<&TemplateReport> for ReportOut {
    fn from(r: &TemplateReport) -> Self {
        Self {
            name: r.name.clone(),
            path: r.path.clone(),
            ok: r.ok(),
            checks: r
                .checks
                .iter()
                .enumerate()
                .map(|(i, c): (usize, &Check)| CheckOut {
                    number: i + 1,
                    requirement: c.requirement.to_string(),
                    passed: c.passed,
                    observed: c.observed.clone(),
                    fix: c.fix.clone(),
                    warning: c.warning.clone(),
                })
                .collect(),
        }
    }
}

impl fmt::Display for ReportOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} ({})",
            if self.ok { "OK  " } else { "FAIL" },
            self.name,
            self.path
        )?;
        for c in &self.checks {
            writeln!(
                f,
                "  {} {}. {}: {}",
                if c.passed { "pass" } else { "FAIL" },
                c.number,
                c.requirement,
                c.observed
            )?;
            if let Some(fix) = &c.fix {
                writeln!(f, "       fix: {fix}")?;
            }
            if let Some(w) = &c.warning {
                writeln!(f, "       warning: {w}")?;
            }
        }
        Ok(())
    }
}

/// Exit 0 when every requirement is met, 1 otherwise.
fn ok_code(ok: bool) -> u8 {
    if ok { 0 } else { EXIT_FAILED }
}

/// Runs `vmw image check [NAME...|--all]`: exit 0 only when every
/// requirement of every VM checked is met.
pub(super) async fn check(ctx: &Context, names: &[String], all: bool) -> anyhow::Result<Report> {
    if names.is_empty() && !all {
        return Err(CliError::usage(
            "name the source VMs to check, or pass --all",
            Some("e.g. vmw image check TEMPLATE-cloud-init-jammy".to_owned()),
        )
        .into());
    }
    let cloud = ctx.cloud(None).await?;
    let mut reports = Vec::new();
    if all {
        reports.extend(cloud.check_templates().await?);
    }
    for name in names {
        reports.push(cloud.check_template(name).await?);
    }
    if reports.is_empty() && !ctx.out.json() {
        tracing::info!("no TEMPLATE-cloud-init-* VM found");
    }
    let ok = reports.iter().all(TemplateReport::ok);
    Ok(Report::of(&Lines(reports.iter().map(ReportOut::from).collect()))?.code(ok_code(ok)))
}

/// What `vmw image import` prints.
#[derive(Debug, Serialize)]
struct Imported {
    name: String,
    replaced: bool,
    spec: serde_json::Value,
    check: ReportOut,
}

impl fmt::Display for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.name)?;
        self.check.fmt(f)
    }
}

/// Runs `vmw image import FILE --release R ...`.
pub(super) async fn import(ctx: &Context, args: ImportArgs) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let task = ctx
        .out
        .task(args.file.file_name().unwrap_or("image").to_owned());
    task.step("import.spec, upload and check");
    let result = cloud
        .import_template(
            &args.file,
            &TemplateImport {
                release: args.release.clone(),
                network: args.network.clone(),
                name: args.name.clone(),
                datastore: args.datastore.clone(),
                folder: args.folder.clone(),
                replace: args.replace,
                force: args.force,
            },
        )
        .await;
    let imported = match result {
        Ok(i) => i,
        Err(e) => {
            task.failed("import");
            return Err(e.into());
        }
    };
    task.done(&format!("imported as {}", imported.name));
    let spec = serde_json::to_value(&imported.spec)?;
    let spec_text = serde_json::to_string_pretty(&imported.spec)?;
    if ctx.global.verbose > 0 {
        tracing::info!("import options used:\n{spec_text}");
    }
    if let Some(path) = &args.save_spec {
        std::fs::write(path, format!("{spec_text}\n")).map_err(|e| {
            CliError::failed(
                format!("cannot write the import options to {path}: {e}"),
                None,
            )
        })?;
    }
    let check = ReportOut::from(&imported.report);
    let ok = check.ok;
    Ok(Report::of(&Imported {
        name: imported.name,
        replaced: imported.replaced,
        spec,
        check,
    })?
    .code(ok_code(ok)))
}
