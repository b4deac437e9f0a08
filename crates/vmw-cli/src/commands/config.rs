//! `vmw config check`: the resolved configuration and where each value came
//! from, govc (path and version), the login, the SSH key and the templates;
//! every problem named, with a hint.

use std::fmt;

use serde::Serialize;
use vmw_cloud::{CloudBuilder, KeyPair};
use vmw_cloud::{ProcessGovc, probe};
use vmw_config::{Loaded, Secret, VmwareConfig, env};

use crate::context::Context;
use crate::error::{CliError, EXIT_FAILED, EXIT_USAGE};
use crate::output::{Report, table};

#[derive(Debug, Default, Serialize)]
struct CheckReport {
    ok: bool,
    config: Option<ConfigReport>,
    govc: Option<GovcReport>,
    login: Option<LoginReport>,
    ssh_key: Option<KeyReport>,
    templates: Option<Vec<String>>,
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ConfigReport {
    file: Option<String>,
    values: Vec<ValueReport>,
    unknown_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ValueReport {
    key: &'static str,
    value: Option<String>,
    origin: Option<String>,
}

#[derive(Debug, Serialize)]
struct GovcReport {
    path: String,
    found_by: String,
    version: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoginReport {
    server: String,
    username: String,
    product: String,
    api_version: String,
}

#[derive(Debug, Serialize)]
struct KeyReport {
    public_key: String,
    private_key: String,
    generated: bool,
}

fn values(loaded: &Loaded) -> Vec<ValueReport> {
    let c = &loaded.config;
    let text = |v: Option<&str>| v.map(str::to_owned);
    vmw_config::known_keys()
        .map(|key| {
            let value = match key {
                // Never user info, even in a configuration built by hand.
                "server" => Some(c.server_display()),
                "username" => text(Some(&c.username)),
                "password" => Some(Secret::default().to_string()),
                "datacenter" => text(Some(&c.datacenter)),
                "datastore" => text(Some(&c.datastore)),
                "folder" => text(Some(&c.folder)),
                "insecure_transport" => Some(c.insecure_transport.to_string()),
                "resource_pool" => text(c.resource_pool.as_deref()),
                "network" => text(c.network.as_deref()),
                "public_key_path" => text(c.public_key_path.as_ref().map(|p| p.as_str())),
                "private_key_path" => text(c.private_key_path.as_ref().map(|p| p.as_str())),
                "key_name" => text(c.key_name.as_deref()),
                _ => None,
            };
            ValueReport {
                key,
                origin: loaded.origin(key).map(ToString::to_string),
                value,
            }
        })
        .collect()
}

/// Runs `vmw config check`.
pub(super) async fn check(ctx: &Context) -> anyhow::Result<Report> {
    let mut report = CheckReport::default();
    let mut errors: Vec<anyhow::Error> = Vec::new();
    let mut code = 0u8;

    let loaded = match ctx.load() {
        Ok(l) => {
            report.config = Some(ConfigReport {
                file: l.file.as_ref().map(ToString::to_string),
                values: values(&l),
                unknown_keys: l.unknown_keys.clone(),
            });
            Some(l)
        }
        Err(e) => {
            code = EXIT_USAGE;
            errors.push(e.into());
            None
        }
    };

    let env_ = &ctx.env;
    let govc = match vmw_cloud::find_govc(None, env_) {
        Ok(path) => {
            let found_by = if env_.get(env::VMW_GOVC).is_some() {
                env::VMW_GOVC.to_owned()
            } else {
                env::PATH.to_owned()
            };
            let config = loaded
                .as_ref()
                .map_or_else(VmwareConfig::default, |l| l.config.clone());
            let govc = ProcessGovc::new(
                path.clone(),
                vmw_cloud::GovcTarget::new(&config, env_.govc_session_dir(), env_),
            );
            let version = match govc.check_version().await {
                Ok(v) => Some(v.to_string()),
                Err(e) => {
                    errors.push(e.into());
                    None
                }
            };
            let usable = version.is_some();
            report.govc = Some(GovcReport {
                path: path.to_string(),
                found_by,
                version,
            });
            usable.then_some(govc)
        }
        Err(e) => {
            errors.push(e.into());
            None
        }
    };

    if let (Some(loaded), Some(govc)) = (&loaded, &govc) {
        let config = &loaded.config;
        match probe::about(govc).await {
            Ok(about) => {
                report.login = Some(LoginReport {
                    server: config.server_display(),
                    username: config.username.clone(),
                    product: about.full_name,
                    api_version: about.api_version,
                });
                match KeyPair::resolve(config, env_) {
                    Ok(key) => {
                        report.ssh_key = Some(KeyReport {
                            public_key: key.public_path.to_string(),
                            private_key: key.private_path.to_string(),
                            generated: key.generated,
                        });
                        let cloud = CloudBuilder::new(ctx.base_tag())
                            .config(config.clone())
                            .environment(env_.clone())
                            .key_pair(key)
                            .build_with(govc.clone());
                        match cloud {
                            Ok(cloud) => match cloud.releases().await {
                                Ok(r) => {
                                    if r.is_empty() {
                                        errors.push(
                                            CliError::failed(
                                                format!(
                                                    "no templates in {}: vmw launches from VMs named {}<release>",
                                                    config.folder,
                                                    vmw_cloud::TEMPLATE_PREFIX
                                                ),
                                                Some("see \"Preparing templates\" in the vmw guide".to_owned()),
                                            )
                                            .into(),
                                        );
                                    }
                                    report.templates = Some(r);
                                }
                                Err(e) => errors.push(e.into()),
                            },
                            Err(e) => errors.push(e.into()),
                        }
                    }
                    Err(e) => errors.push(e.into()),
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }

    report.problems = errors
        .iter()
        .map(|e| crate::error::render(e, ctx.target()))
        .collect();
    report.ok = errors.is_empty();
    if errors.is_empty() {
        return Report::of(&report);
    }
    if code == 0 {
        code = errors.first().map_or(EXIT_FAILED, crate::error::exit_code);
    }
    Ok(Report::of(&report)?
        .failures(errors)
        .fail(CliError::silent(code)))
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self))
    }
}

fn human(r: &CheckReport) -> String {
    let mut s = String::new();
    match &r.config {
        Some(c) => {
            s.push_str(&format!(
                "config: {}\n",
                c.file
                    .as_deref()
                    .unwrap_or("no file (values from the environment)")
            ));
            let rows: Vec<Vec<String>> = c
                .values
                .iter()
                .map(|v| {
                    vec![
                        format!("  {}", v.key),
                        v.value.clone().unwrap_or_else(|| "-".to_owned()),
                        v.origin.clone().unwrap_or_else(|| "not set".to_owned()),
                    ]
                })
                .collect();
            let table = table(&["  KEY", "VALUE", "FROM"], &rows);
            s.push_str(&table);
            for k in &c.unknown_keys {
                s.push_str(&format!("  unknown key `{k}` (ignored)\n"));
            }
        }
        None => s.push_str("config: not usable (see below)\n"),
    }
    match &r.govc {
        Some(g) => s.push_str(&format!(
            "govc: {} (from {}), version {}\n",
            g.path,
            g.found_by,
            g.version.as_deref().unwrap_or("not usable")
        )),
        None => s.push_str("govc: not found\n"),
    }
    match &r.login {
        Some(l) => s.push_str(&format!(
            "login: ok, {} as {} ({}, API {})\n",
            l.server, l.username, l.product, l.api_version
        )),
        None => s.push_str("login: not done\n"),
    }
    if let Some(k) = &r.ssh_key {
        s.push_str(&format!(
            "ssh key: {}{}\n",
            k.public_key,
            if k.generated {
                " (generated by vmw)"
            } else {
                ""
            }
        ));
    }
    if let Some(t) = &r.templates {
        s.push_str(&format!(
            "templates: {}\n",
            if t.is_empty() {
                "none".to_owned()
            } else {
                t.join(", ")
            }
        ));
    }
    s.push_str(if r.ok { "ok\n" } else { "problems found\n" });
    s
}
