//! Unit tests of the loader: files, precedence, environment and errors.

use super::*;

const FULL: &str = r#"
[ec2]
region = "us-west-2"

[vmware]
server = "vcenter.example.com"
username = "me@vsphere.local"
password = "pa ss'word"
datacenter = "DC0"
datastore = "LocalDS_0"
folder = "/DC0/vm"
insecure_transport = true
public_key_path = "~/.ssh/id_ed25519.pub"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.dir.path().join(rel)).unwrap()
    }

    fn write(&self, rel: &str, text: &str) -> Utf8PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// An environment whose HOME is in the fixture and a loader whose system
    /// file is in the fixture too, so the machine's files never interfere.
    fn loader(&self, env: &[(&str, &str)]) -> Loader {
        let mut e = Environment::from_pairs([("HOME", self.path("home").to_string())]);
        for (k, v) in env {
            e = e.with(*k, *v);
        }
        Loader::with_environment(e).system_file(self.path("etc/pycloudlib.toml"))
    }
}

fn all_overrides() -> Overrides {
    Overrides {
        server: Some("o-server".into()),
        username: Some("o-user".into()),
        password: Some(Secret::new("o-pass")),
        datacenter: Some("o-dc".into()),
        datastore: Some("o-ds".into()),
        folder: Some("o-folder".into()),
        ..Overrides::default()
    }
}

#[test]
fn reads_every_key_of_the_vmware_section() {
    let fx = Fixture::new();
    let path = fx.write("cfg.toml", FULL);
    let loaded = fx.loader(&[]).file(path.clone()).load().unwrap();
    let c = &loaded.config;
    assert_eq!(c.server, "vcenter.example.com");
    assert_eq!(c.username, "me@vsphere.local");
    assert_eq!(c.password.expose(), "pa ss'word");
    assert_eq!(c.datacenter, "DC0");
    assert_eq!(c.datastore, "LocalDS_0");
    assert_eq!(c.folder, "/DC0/vm");
    assert!(c.insecure_transport);
    assert_eq!(
        c.public_key_path.as_deref(),
        Some(Utf8Path::new("~/.ssh/id_ed25519.pub"))
    );
    assert_eq!(c.private_key_path, None);
    assert_eq!(loaded.file.as_ref(), Some(&path));
    assert_eq!(loaded.origin("server"), Some(&Origin::File(path)));
    assert!(loaded.unknown_keys.is_empty());
}

#[test]
fn search_order_is_pycloudlib_config_then_home_then_etc() {
    let fx = Fixture::new();
    let etc = fx.write("etc/pycloudlib.toml", &FULL.replace("DC0\"", "ETC\""));
    // Only /etc exists: it is used.
    let loaded = fx.loader(&[]).load().unwrap();
    assert_eq!(loaded.file.as_ref(), Some(&etc));
    assert_eq!(loaded.config.datacenter, "ETC");

    // ~/.config wins over /etc.
    let home = fx.write(
        "home/.config/pycloudlib.toml",
        &FULL.replace("DC0\"", "HOME\""),
    );
    let loaded = fx.loader(&[]).load().unwrap();
    assert_eq!(loaded.file.as_ref(), Some(&home));
    assert_eq!(loaded.config.datacenter, "HOME");

    // PYCLOUDLIB_CONFIG wins over both.
    let named = fx.write("named.toml", &FULL.replace("DC0\"", "NAMED\""));
    let loaded = fx
        .loader(&[("PYCLOUDLIB_CONFIG", named.as_str())])
        .load()
        .unwrap();
    assert_eq!(loaded.config.datacenter, "NAMED");

    // An explicit path wins over PYCLOUDLIB_CONFIG.
    let explicit = fx.write("explicit.toml", &FULL.replace("DC0\"", "EXPLICIT\""));
    let loaded = fx
        .loader(&[("PYCLOUDLIB_CONFIG", named.as_str())])
        .file(explicit)
        .load()
        .unwrap();
    assert_eq!(loaded.config.datacenter, "EXPLICIT");
}

#[test]
fn a_named_file_that_does_not_exist_is_an_error() {
    let fx = Fixture::new();
    fx.write("home/.config/pycloudlib.toml", FULL);
    let err = fx
        .loader(&[])
        .file(fx.path("typo.toml"))
        .load()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ConfigError::NamedFileMissing { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("typo.toml") && msg.contains("given by the caller"),
        "{msg}"
    );

    let missing = fx.path("nope.toml");
    let err = fx
        .loader(&[("PYCLOUDLIB_CONFIG", missing.as_str())])
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("PYCLOUDLIB_CONFIG"), "{err}");
}

#[test]
fn no_file_anywhere_lists_every_path_tried_and_every_missing_key() {
    let fx = Fixture::new();
    let err = fx.loader(&[]).load().unwrap_err();
    let ConfigError::Missing { keys, file, tried } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(file, &None);
    assert_eq!(
        tried,
        &vec![
            fx.path("home/.config/pycloudlib.toml"),
            fx.path("etc/pycloudlib.toml")
        ]
    );
    let names: Vec<_> = keys.iter().map(|k| k.key).collect();
    assert_eq!(
        names,
        [
            "server",
            "username",
            "password",
            "datacenter",
            "datastore",
            "folder"
        ]
    );
    let msg = err.to_string();
    for p in tried {
        assert!(msg.contains(p.as_str()), "{msg}");
    }
    // The fact in the message; what to set, as a hint.
    let hints = err.hints().join("\n");
    assert!(
        hints.contains("GOVC_URL") && hints.contains("GOVC_FOLDER"),
        "{hints}"
    );
}

#[test]
fn missing_keys_are_all_listed_with_the_file() {
    let fx = Fixture::new();
    let path = fx.write(
        "cfg.toml",
        "[vmware]\nserver = \"x\"\nusername = \"u\"\nfolder = \"\"\n",
    );
    let err = fx.loader(&[]).file(path.clone()).load().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(path.as_str()), "{msg}");
    assert!(
        msg.contains("password, datacenter, datastore, folder"),
        "empty values count as missing: {msg}"
    );
    assert!(!msg.contains("server,"), "{msg}");
}

#[test]
fn a_file_without_a_vmware_section_reports_the_missing_keys() {
    let fx = Fixture::new();
    let path = fx.write("cfg.toml", "[ec2]\nregion = \"x\"\n");
    let err = fx.loader(&[]).file(path.clone()).load().unwrap_err();
    assert!(
        matches!(&err, ConfigError::Missing { file: Some(p), keys, .. } if *p == path && keys.len() == 6)
    );
}

#[test]
fn toml_errors_give_file_line_and_column() {
    let fx = Fixture::new();
    let path = fx.write("bad.toml", "[vmware]\nserver = \"x\"\nusername = = 3\n");
    let err = fx.loader(&[]).file(path.clone()).load().unwrap_err();
    let ConfigError::Toml { line, column, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*line, *column), (3, 12));
    assert!(
        err.to_string()
            .starts_with(&format!("{path}:3:12: invalid TOML")),
        "{err}"
    );
}

#[test]
fn wrong_types_are_named_all_at_once_and_never_echo_the_password() {
    let fx = Fixture::new();
    let text = FULL
        .replace("insecure_transport = true", "insecure_transport = \"yes\"")
        .replace("datastore = \"LocalDS_0\"", "datastore = 7")
        .replace("password = \"pa ss'word\"", "password = [\"hunter2\"]");
    let path = fx.write("cfg.toml", &text);
    let err = fx.loader(&[]).file(path).load().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`insecure_transport` (line 12, column 22) must be true or false (without quotes), found the string \"yes\""),
        "{msg}"
    );
    assert!(
        msg.contains("`datastore`") && msg.contains("the integer 7"),
        "{msg}"
    );
    assert!(
        msg.contains("`password`") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[test]
fn unknown_keys_are_reported_not_fatal() {
    let fx = Fixture::new();
    let path = fx.write("cfg.toml", &format!("{FULL}datastor = \"typo\"\n"));
    let loaded = fx.loader(&[]).file(path).load().unwrap();
    assert_eq!(loaded.unknown_keys, ["datastor"]);
}

#[test]
fn overrides_win_over_the_file_and_env_fills_the_rest() {
    let fx = Fixture::new();
    let path = fx.write(
        "cfg.toml",
        "[vmware]\nserver = \"file-server\"\nusername = \"file-user\"\n",
    );
    let loaded = fx
        .loader(&[
            ("GOVC_URL", "env-server"),
            ("GOVC_PASSWORD", "env-pass"),
            ("GOVC_DATACENTER", "env-dc"),
            ("GOVC_DATASTORE", "env-ds"),
            ("GOVC_FOLDER", "env-folder"),
            ("GOVC_INSECURE", "1"),
            ("GOVC_RESOURCE_POOL", "/DC0/host/C0/Resources"),
        ])
        .file(path.clone())
        .overrides(Overrides {
            username: Some("override-user".into()),
            ..Overrides::default()
        })
        .load()
        .unwrap();
    let c = &loaded.config;
    assert_eq!(c.server, "file-server");
    assert_eq!(c.username, "override-user");
    assert_eq!(c.password.expose(), "env-pass");
    assert_eq!(c.folder, "env-folder");
    assert!(c.insecure_transport);
    assert_eq!(c.resource_pool.as_deref(), Some("/DC0/host/C0/Resources"));
    assert_eq!(loaded.origin("server"), Some(&Origin::File(path)));
    assert_eq!(loaded.origin("username"), Some(&Origin::Override));
    assert_eq!(
        loaded.origin("password"),
        Some(&Origin::Env("GOVC_PASSWORD"))
    );
}

#[test]
fn all_required_overrides_read_no_file() {
    let fx = Fixture::new();
    // A broken file in a default location proves it is never opened.
    fx.write("home/.config/pycloudlib.toml", "this is = = not toml");
    let loaded = fx.loader(&[]).overrides(all_overrides()).load().unwrap();
    assert_eq!(loaded.file, None);
    assert_eq!(loaded.config.server, "o-server");
    assert!(!loaded.config.insecure_transport);
    assert_eq!(loaded.origin("insecure_transport"), Some(&Origin::Default));
}

#[test]
fn env_alone_is_enough_when_no_file_exists() {
    let fx = Fixture::new();
    let loaded = fx
        .loader(&[
            ("GOVC_URL", "https://vc/sdk"),
            ("GOVC_USERNAME", "u"),
            ("GOVC_PASSWORD", "p"),
            ("GOVC_DATACENTER", "dc"),
            ("GOVC_DATASTORE", "ds"),
            ("GOVC_FOLDER", "f"),
        ])
        .load()
        .unwrap();
    assert_eq!(loaded.config.server, "https://vc/sdk");
    assert_eq!(loaded.file, None);
}

#[test]
fn a_broken_default_file_is_an_error_not_skipped() {
    let fx = Fixture::new();
    fx.write("home/.config/pycloudlib.toml", "[vmware\n");
    fx.write("etc/pycloudlib.toml", FULL);
    let err = fx.loader(&[]).load().unwrap_err();
    assert!(matches!(err, ConfigError::Toml { line: 1, .. }), "{err:?}");
}

#[test]
fn bad_govc_insecure_is_named() {
    let fx = Fixture::new();
    let err = fx
        .loader(&[("GOVC_INSECURE", "maybe")])
        .overrides(all_overrides())
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("GOVC_INSECURE=\"maybe\""), "{err}");
}

#[test]
fn login_is_the_configured_credentials_and_hides_the_password() {
    let fx = Fixture::new();
    let loaded = fx
        .loader(&[])
        .overrides(Overrides {
            insecure_transport: Some(true),
            resource_pool: Some("/DC0/host/DC0_C0/Resources".into()),
            ..all_overrides()
        })
        .load()
        .unwrap();
    let login = loaded.config.login();
    assert_eq!(
        login,
        Login {
            address: "o-server".into(),
            username: "o-user".into(),
            password: Secret::new("o-pass"),
        }
    );
    let debug = format!("{login:?} {login:#?} {:?}", loaded.config);
    assert!(!debug.contains("o-pass"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn session_dir_follows_xdg_then_home() {
    let e = Environment::from_pairs([("HOME", "/home/u")]);
    assert_eq!(
        e.govc_session_dir(),
        Some(Utf8PathBuf::from("/home/u/.cache/vmw/govmomi"))
    );
    let e = e.with("XDG_CACHE_HOME", "/x");
    assert_eq!(
        e.govc_session_dir(),
        Some(Utf8PathBuf::from("/x/vmw/govmomi"))
    );
    assert_eq!(Environment::default().govc_session_dir(), None);
}

#[test]
fn environment_debug_redacts_govc_password() {
    let e = Environment::from_pairs([("GOVC_PASSWORD", "hunter2")]);
    assert!(!format!("{e:?}").contains("hunter2"));
}

/// The configuration keys other than server, user and password.
fn placement_overrides() -> Overrides {
    Overrides {
        datacenter: Some("DC0".into()),
        datastore: Some("LocalDS_0".into()),
        folder: Some("/DC0/vm".into()),
        ..Overrides::default()
    }
}

#[test]
fn credentials_in_the_server_url_fill_username_and_password() {
    let fx = Fixture::new();
    let loaded = fx
        .loader(&[(
            "GOVC_URL",
            "https://administrator%40vsphere.local:p%40ss%3Aw%2F%25rd@vc.example.com/sdk",
        )])
        .overrides(placement_overrides())
        .load()
        .unwrap();
    let c = &loaded.config;
    assert_eq!(c.server, "https://vc.example.com/sdk");
    assert_eq!(c.username, "administrator@vsphere.local");
    assert_eq!(c.password.expose(), "p@ss:w/%rd");
    let from_url = Origin::ServerUrl(Box::new(Origin::Env("GOVC_URL")));
    assert_eq!(loaded.origin("server"), Some(&Origin::Env("GOVC_URL")));
    assert_eq!(loaded.origin("username"), Some(&from_url));
    assert_eq!(loaded.origin("password"), Some(&from_url));
    assert_eq!(
        from_url.to_string(),
        "the URL in `server` (environment variable GOVC_URL)"
    );

    let login = c.login();
    assert_eq!(login.address, "https://vc.example.com/sdk");
    assert_eq!(login.username, "administrator@vsphere.local");
    assert_eq!(login.password.expose(), "p@ss:w/%rd");
    let shown = format!("{loaded:?} {login:?} {}", c.server_display());
    for secret in ["p@ss", "p%40ss", "%25rd"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn explicit_username_and_password_win_over_the_url() {
    let fx = Fixture::new();
    let path = fx.write(
        "cfg.toml",
        "[vmware]\nserver = \"https://url-user:url-pass@vc/sdk\"\n",
    );
    // The password from the environment beats the one in the file's URL;
    // the URL still gives the user name.
    let loaded = fx
        .loader(&[("GOVC_PASSWORD", "env-pass")])
        .file(path.clone())
        .overrides(placement_overrides())
        .load()
        .unwrap();
    assert_eq!(loaded.config.server, "https://vc/sdk");
    assert_eq!(loaded.config.username, "url-user");
    assert_eq!(loaded.config.password.expose(), "env-pass");
    assert_eq!(
        loaded.origin("password"),
        Some(&Origin::Env("GOVC_PASSWORD"))
    );
    assert_eq!(
        loaded.origin("username"),
        Some(&Origin::ServerUrl(Box::new(Origin::File(path.clone()))))
    );

    // An override of the user name beats the URL too.
    let loaded = fx
        .loader(&[])
        .file(path)
        .overrides(Overrides {
            username: Some("o-user".into()),
            ..placement_overrides()
        })
        .load()
        .unwrap();
    assert_eq!(loaded.config.username, "o-user");
    assert_eq!(loaded.config.password.expose(), "url-pass");
}

#[test]
fn a_url_without_a_password_still_needs_one() {
    let fx = Fixture::new();
    let err = fx
        .loader(&[("GOVC_URL", "https://alice@vc/sdk")])
        .overrides(placement_overrides())
        .load()
        .unwrap_err();
    let ConfigError::Missing { keys, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(keys.iter().map(|k| k.key).collect::<Vec<_>>(), ["password"]);
}

#[test]
fn unreadable_user_info_is_an_error_that_does_not_show_it() {
    let fx = Fixture::new();
    for (url, secret) in [
        ("https://u:50%off@vc/sdk", "50%off"),
        ("https://u:pa/ss@vc/sdk", "pa/ss"),
    ] {
        let err = fx
            .loader(&[("GOVC_URL", url)])
            .overrides(placement_overrides())
            .load()
            .unwrap_err();
        assert!(matches!(err, ConfigError::BadServer { .. }), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("environment variable GOVC_URL"), "{shown}");
        assert!(!shown.contains("hint:"), "{shown}");
        let hints = err.hints();
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert!(hints[0].contains('%'), "{hints:?}");
        assert!(!hints[0].contains(secret), "{hints:?}");
    }
}

#[test]
fn a_hand_made_config_with_user_info_is_cleaned_too() {
    let config = VmwareConfig {
        server: "https://alice:hunter2@vc/sdk".into(),
        ..VmwareConfig::default()
    };
    assert_eq!(config.server_display(), "https://vc/sdk");
    let login = config.login();
    assert_eq!(login.address, "https://vc/sdk");
    assert_eq!(login.username, "alice");
    assert_eq!(login.password.expose(), "hunter2");
    // The same login as a clean configuration's.
    let same = VmwareConfig {
        server: "https://vc/sdk".into(),
        username: "alice".into(),
        password: Secret::new("hunter2"),
        ..config.clone()
    };
    assert_eq!(login, same.login());
    // Explicit fields win over the URL, as in the loader, each on its own.
    let explicit = VmwareConfig {
        username: "bob".into(),
        password: Secret::new("other"),
        ..config.clone()
    };
    let e = explicit.login();
    assert_eq!(e.username, "bob");
    assert_eq!(e.password.expose(), "other");
    assert_eq!(e.address, "https://vc/sdk");
    let only_user = VmwareConfig {
        username: "bob".into(),
        ..config.clone()
    };
    assert_eq!(only_user.login().username, "bob");
    assert_eq!(only_user.login().password.expose(), "hunter2");

    let overrides = Overrides {
        server: Some(config.server.clone()),
        ..Overrides::default()
    };
    let caller = Environment::from_pairs([("GOVC_URL", config.server.as_str())]);
    let shown = format!("{config:?} {config:#?} {login:?} {overrides:?} {caller:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("https://vc/sdk"), "{shown}");
}

#[test]
fn a_server_that_does_not_parse_gives_a_redacted_address() {
    let config = VmwareConfig {
        server: "https://u:50%off@vc/sdk".into(),
        username: "alice".into(),
        password: Secret::new("pw"),
        datacenter: "DC0".into(),
        datastore: "ds".into(),
        folder: "/DC0/vm".into(),
        ..VmwareConfig::default()
    };
    let login = config.login();
    assert_eq!(login.address, config.server_display());
    assert!(!login.address.contains("50%off"), "{}", login.address);
    assert_eq!(login.username, "alice");
    assert_eq!(login.password.expose(), "pw");
}
