//! The `vmw` binary never panics on what users type: instance types,
//! durations, `K=V` pairs, tags, names, numbers, metadata and config files
//! of any content, and environment variables (`USER`, `VMW_TAG`,
//! `VMW_SSH_PORT`, `VMW_CLONE_GRACE`, `RUST_LOG`, ...) of any value. Each
//! case runs the built binary with no reachable vCenter: it must end with a
//! usage or configuration error (exit status 1 or 2) and a message, never a
//! panic (exit status 101). Instance types and durations are refused exactly
//! when they are not valid.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use vmw_cloud::InstanceType;

/// Text of every kind that a command line can carry: any Unicode
/// (multibyte and control characters included) except NUL, and the empty
/// string.
fn arg_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,30}",
        "[\\x01-\\x1f\\x7f -]{0,6}",
        Just(String::new()),
    ]
    .prop_map(|s| s.replace('\0', ""))
}

fn instance_type_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,3}[cC][0-9]{0,6}[gGmMé]?",
        "[ +-]?[0-9]{0,11}[cé€]{0,2}[0-9]{0,21}[gmtGé😀]{0,2}",
        arg_text(),
    ]
}

fn duration_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,4}(ms|s|m|h|d|é)?([0-9]{1,3}(ms|s|m|h))?",
        "[ +-]?[0-9]{0,21}[smhé€ ]{0,3}",
        arg_text(),
    ]
}

/// An independent model of the duration syntax: a bare number of seconds,
/// or numbers with units `ms`, `s`, `m`, `h`, `d` adding up to more than zero.
fn duration_ok(s: &str) -> bool {
    let t = s.trim();
    if t.is_empty() {
        return false;
    }
    if t.parse::<u64>().is_ok() {
        return true;
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let Ok(n) = rest[..digits].parse::<u64>() else {
            return false;
        };
        rest = &rest[digits..];
        let unit: String = rest.chars().take_while(|c| !c.is_ascii_digit()).collect();
        let scale: u128 = match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return false,
        };
        total = total.saturating_add(u128::from(n) * scale);
        rest = &rest[unit.len()..];
    }
    total > 0
}

/// An empty home, a config path that names no file (or a file of any
/// content), and no govc: nothing can reach a vCenter.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: Utf8PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        std::fs::create_dir_all(root.join("home")).unwrap();
        Self { _dir: dir, root }
    }

    fn file(&self, name: &str, content: &[u8]) -> Utf8PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn run(&self, args: &[String], env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmw"));
        cmd.env_clear()
            .env("HOME", self.root.join("home"))
            .env("USER", "tester")
            .env("PATH", "/nonexistent")
            .env("VMW_GOVC", self.root.join("no-govc"))
            .env("PYCLOUDLIB_CONFIG", self.root.join("none.toml"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // A run that got further than it should (it waited for something)
        // is stopped and reported.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("vmw {args:?} did not finish");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.wait_with_output().unwrap()
    }
}

/// The run ended with a usage, configuration or operation error, not a
/// panic: its exit status and stderr.
fn ended_with_error(out: &Output, args: &[String]) -> Result<(i32, String), TestCaseError> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code();
    prop_assert!(
        matches!(code, Some(1 | 2)),
        "vmw {args:?} exited with {code:?}:\n{stderr}"
    );
    prop_assert!(!stderr.contains("panicked"), "vmw {args:?}:\n{stderr}");
    prop_assert!(stderr.contains("error"), "vmw {args:?}:\n{stderr}");
    Ok((code.unwrap_or_default(), stderr))
}

/// Options of `vmw launch`, each given or not.
#[derive(Debug, Clone)]
struct LaunchOptions {
    instance_type: Option<String>,
    durations: Vec<(&'static str, String)>,
    extra_config: Vec<String>,
    name: Option<String>,
    numbers: Vec<(&'static str, String)>,
    network: Option<String>,
    wait: Option<String>,
    metadata: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
}

/// Mostly valid values (so that runs get past the command line parser to
/// vmw's own checks), sometimes anything.
fn mostly<S: Strategy<Value = String> + 'static>(valid: S) -> impl Strategy<Value = String> {
    prop_oneof![4 => valid, 1 => arg_text()]
}

fn launch_options() -> impl Strategy<Value = LaunchOptions> {
    let duration_flags = prop::sample::subsequence(
        vec![
            "--wait-timeout",
            "--ip-timeout",
            "--ready-timeout",
            "--clone-grace",
        ],
        0..=2,
    );
    let number_flags = prop::sample::subsequence(
        vec![
            "--count",
            "--cpus",
            "--memory",
            "--disk-size",
            "--concurrency",
            "--ssh-port",
        ],
        0..=2,
    );
    (
        prop::option::of(prop_oneof![
            3 => "[1-9][0-9]{0,2}[cC][1-9][0-9]{0,4}[gGmM]",
            1 => instance_type_like(),
        ]),
        duration_flags.prop_flat_map(|flags| {
            let n = flags.len();
            (Just(flags), prop::collection::vec(prop_oneof![
                3 => "[1-9][0-9]{0,3}(ms|s|m|h)",
                1 => duration_like(),
            ], n))
        }),
        prop::collection::vec(
            prop_oneof![
                4 => "[a-zA-Z][a-zA-Z0-9.]{0,10}=[a-zA-Z0-9]{0,6}",
                1 => Just("guestinfo.userdata=x".to_owned()),
                1 => arg_text(),
            ],
            0..3,
        ),
        prop::option::of(mostly("[a-z][a-z0-9-]{0,10}")),
        number_flags.prop_flat_map(|flags| {
            let n = flags.len();
            (Just(flags), prop::collection::vec(prop_oneof![
                4 => "[0-9]{1,3}",
                1 => "[+-]?[0-9]{0,22}",
                1 => arg_text(),
            ], n))
        }),
        prop::option::of(mostly("[a-zA-Z][a-zA-Z ]{0,9}")),
        prop::option::of(mostly(
            prop::sample::select(vec!["none", "ip", "ssh", "ready"]).prop_map(str::to_owned),
        )),
        prop::option::of(prop_oneof![
            2 => Just(b"network:\n  version: 2\n".to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..100),
            1 => "(network:\n  version: [0-9]\n)?[a-z:\\[\\]{}&*!|>' \n-]{0,40}".prop_map(String::into_bytes),
        ]),
        prop::option::of(prop_oneof![
            2 => "#cloud-config\n[a-z]{1,6}: [a-z0-9]{0,6}\n".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..100),
        ]),
    )
        .prop_map(
            |(instance_type, (duration_flags, durations), extra_config, name, (number_flags, numbers), network, wait, metadata, user_data)| {
                LaunchOptions {
                    instance_type,
                    durations: duration_flags.into_iter().zip(durations).collect(),
                    extra_config,
                    name,
                    numbers: number_flags.into_iter().zip(numbers).collect(),
                    network,
                    wait,
                    metadata,
                    user_data,
                }
            },
        )
}

fn env_var() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "USER",
                "LOGNAME",
                "VMW_TAG",
                "VMW_SSH_USER",
                "VMW_SSH_PORT",
                "VMW_CLONE_GRACE",
                "RUST_LOG",
                "TERM",
                "NO_COLOR",
                "GOVC_URL",
                "GOVC_INSECURE",
            ]),
            prop_oneof![
                arg_text(),
                "[a-z_]{0,6}(=|,|\\[|\\{|\\}|\\]|::)[a-z=\"]{0,6}",
                "[0-9]{0,6}[smh]?",
            ],
        ),
        0..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn instance_types_are_refused_exactly_when_invalid(text in instance_type_like()) {
        let sandbox = Sandbox::new();
        let args: Vec<String> = ["launch", "--release", "jammy"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([format!("--instance-type={text}")])
            .collect();
        let out = sandbox.run(&args, &[]);
        let (code, stderr) = ended_with_error(&out, &args)?;
        prop_assert_eq!(code, 2);
        let refused = stderr.contains("e.g. 2c4g");
        prop_assert_eq!(refused, text.parse::<InstanceType>().is_err(), "{}", stderr);
    }

    #[test]
    fn durations_are_refused_exactly_when_invalid(
        text in duration_like(),
        flag in prop::sample::select(vec!["--wait-timeout", "--ip-timeout", "--ready-timeout", "--clone-grace"]),
    ) {
        let sandbox = Sandbox::new();
        let args = vec!["launch".to_owned(), "--release=jammy".to_owned(), format!("{flag}={text}")];
        let out = sandbox.run(&args, &[]);
        let (code, stderr) = ended_with_error(&out, &args)?;
        prop_assert_eq!(code, 2);
        prop_assert_eq!(stderr.contains(flag), !duration_ok(&text), "{}", stderr);
    }

    #[test]
    fn launch_options_of_any_value_end_in_an_error(
        options in launch_options(),
        env in env_var(),
        config in prop::option::of(prop_oneof![
            arg_text().prop_map(String::into_bytes),
            Just(b"[vmware]\nserver = \"u:p@vc\"\nusername = \"u\"\npassword = \"p\"\ndatacenter = \"DC0\"\ndatastore = \"ds\"\nfolder = \"/DC0/vm\"\n".to_vec()),
        ]),
    ) {
        let sandbox = Sandbox::new();
        let mut args = vec!["launch".to_owned(), "--release=jammy".to_owned()];
        if let Some(t) = &options.instance_type {
            args.push(format!("--instance-type={t}"));
        }
        for (flag, value) in options.durations.iter().chain(&options.numbers) {
            args.push(format!("{flag}={value}"));
        }
        for kv in &options.extra_config {
            args.push(format!("--extra-config={kv}"));
        }
        if let Some(n) = &options.name {
            args.push(format!("--name={n}"));
        }
        if let Some(n) = &options.network {
            args.push(format!("--network={n}"));
        }
        if let Some(w) = &options.wait {
            args.push(format!("--wait={w}"));
        }
        if let Some(m) = &options.metadata {
            args.push(format!("--metadata={}", sandbox.file("meta.yaml", m)));
        }
        if let Some(u) = &options.user_data {
            args.push(format!("--user-data={}", sandbox.file("user-data", u)));
        }
        let mut env = env;
        if let Some(c) = &config {
            env.push(("PYCLOUDLIB_CONFIG", sandbox.file("pycloudlib.toml", c).to_string()));
        }
        let out = sandbox.run(&args, &env);
        ended_with_error(&out, &args)?;
    }

    #[test]
    fn other_commands_of_any_value_end_in_an_error(
        command in prop::sample::select(vec![
            "list", "ip", "start", "stop", "restart", "delete", "exec", "console", "snapshot",
            "checkpoint create", "checkpoint revert", "image delete", "image check", "clean",
        ]),
        name in arg_text(),
        tag in prop::option::of(prop_oneof!["[a-z0-9-]{0,12}", arg_text()]),
        timeout in prop::option::of(duration_like()),
        env in env_var(),
    ) {
        let sandbox = Sandbox::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(t) = &tag {
            args.push(format!("--tag={t}"));
        }
        args.extend(command.split(' ').map(str::to_owned));
        match command {
            "list" | "clean" => args.push("--all-tags".to_owned()),
            "stop" | "restart" => {
                if let Some(t) = &timeout {
                    args.push("--graceful".to_owned());
                    args.push(format!("--timeout={t}"));
                }
                args.push("--".to_owned());
                args.push(name.clone());
            }
            "exec" => {
                args.push("--".to_owned());
                args.push(name.clone());
                args.push(name.clone());
            }
            "checkpoint create" | "checkpoint revert" => {
                args.push("--".to_owned());
                args.push(name.clone());
                args.push(name.clone());
            }
            _ => {
                args.push("--".to_owned());
                args.push(name.clone());
            }
        }
        let out = sandbox.run(&args, &env);
        ended_with_error(&out, &args)?;
    }
}
