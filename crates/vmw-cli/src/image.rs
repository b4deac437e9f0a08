//! `vmw image import` and `vmw image check`: making source templates and
//! checking the five requirements.

use std::process::ExitCode;

use camino::Utf8PathBuf;
use serde::Serialize;
use vmw_cloud::{Check, TemplateImport, TemplateReport};

use crate::context::Context;
use crate::error::{CliError, EXIT_FAILED};
use crate::output;
use crate::progress::Task;

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

fn report_out(r: &TemplateReport) -> ReportOut {
    ReportOut {
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

fn print_report(r: &ReportOut) -> anyhow::Result<()> {
    output::line(&format!(
        "{} {} ({})",
        if r.ok { "OK  " } else { "FAIL" },
        r.name,
        r.path
    ))?;
    for c in &r.checks {
        output::line(&format!(
            "  {} {}. {}: {}",
            if c.passed { "pass" } else { "FAIL" },
            c.number,
            c.requirement,
            c.observed
        ))?;
        if let Some(fix) = &c.fix {
            output::line(&format!("       fix: {fix}"))?;
        }
        if let Some(w) = &c.warning {
            output::line(&format!("       warning: {w}"))?;
        }
    }
    Ok(())
}

/// `vmw image check [NAME...|--all]`: exit 0 only when every requirement of
/// every VM checked is met.
pub(crate) async fn check(ctx: &Context, names: &[String], all: bool) -> anyhow::Result<ExitCode> {
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
    let out: Vec<ReportOut> = reports.iter().map(report_out).collect();
    if ctx.global.json {
        output::json(&out)?;
    } else {
        if out.is_empty() {
            tracing::info!("no TEMPLATE-cloud-init-* VM found");
        }
        for r in &out {
            print_report(r)?;
        }
    }
    Ok(if out.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// The arguments of `vmw image import`.
pub(crate) struct ImportArgs {
    pub(crate) file: Utf8PathBuf,
    pub(crate) release: String,
    pub(crate) network: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) datastore: Option<String>,
    pub(crate) folder: Option<String>,
    pub(crate) replace: bool,
    pub(crate) force: bool,
    pub(crate) save_spec: Option<Utf8PathBuf>,
}

/// What `vmw image import --json` prints.
#[derive(Debug, Serialize)]
struct Imported {
    name: String,
    replaced: bool,
    spec: serde_json::Value,
    check: ReportOut,
}

/// `vmw image import FILE --release R ...`.
pub(crate) async fn import(ctx: &Context, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let cloud = ctx.cloud(None).await?;
    let task = Task::new(args.file.file_name().unwrap_or("image").to_owned());
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
    let check = report_out(&imported.report);
    let ok = check.ok;
    if ctx.global.json {
        output::json(&Imported {
            name: imported.name.clone(),
            replaced: imported.replaced,
            spec,
            check,
        })?;
    } else {
        output::line(&imported.name)?;
        print_report(&check)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
