//! No input panics the configuration: config files of any text (and TOML
//! with wrong types, broken quoting and multibyte characters), `GOVC_*`
//! variables of any value, and `server` URLs of any form. Errors name the
//! file or variable and point inside the file; the password never shows in
//! an error or a `Debug`; URLs with user info give back the user name,
//! password and address they were built from.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use camino::Utf8PathBuf;
use proptest::prelude::*;
use vmw_config::env::{
    GOVC_DATACENTER, GOVC_DATASTORE, GOVC_FOLDER, GOVC_INSECURE, GOVC_NETWORK, GOVC_PASSWORD,
    GOVC_RESOURCE_POOL, GOVC_URL, GOVC_USERNAME, PYCLOUDLIB_CONFIG,
};
use vmw_config::server::redact;
use vmw_config::{ConfigError, Environment, Loader, Secret, ServerUrl, VmwareConfig};

/// Text of every kind: any Unicode (control characters and multibyte
/// characters included), and the empty string.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[\\x00-\\x1f\\x7f ]{0,8}",
        Just(String::new()),
    ]
}

/// A password that shows up nowhere else.
fn password() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9]{8}",
        prop_oneof![Just(String::new()), "[ -~é€]{0,8}"],
    )
        .prop_map(|(marker, tail)| format!("s3cr3t{marker}{tail}"))
}

/// Every byte percent-encoded except ASCII letters and digits.
fn escape_all(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Text that must not appear in `shown`: the password, raw or escaped.
fn hides(shown: &str, password: &str) -> bool {
    !shown.contains(password) && !shown.contains(&escape_all(password))
}

// ----- config files --------------------------------------------------------

/// A TOML value of any type, sometimes broken.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "\"[a-zA-Z0-9 /._@:%é€😀-]{0,16}\"",
        4 => "'[^'\n\\x00-\\x1f\\x7f]{0,12}'",
        1 => "\"\"\"[a-z\n]{0,8}\"\"\"",
        1 => "\"[a-z]{0,4}\\\\[nt\"u]?[0-9a-fA-F]{0,8}\"",
        1 => "\"[a-z]{0,6}",
        2 => "-?[0-9_]{1,22}",
        1 => "0x[0-9a-fA-FxX]{1,20}",
        1 => "[0-9]{1,3}\\.[0-9]{0,3}e?[0-9]{0,4}",
        3 => "true|false|True|yes|inf|nan",
        1 => "1979-05-27T07:32:00Z|1979-05-27|07:32:00|1979-13-45",
        1 => "\\[ ?(\"a\"|1|true)?( ?, ?(\"b\"|2))? ?\\]?",
        1 => "\\{ ?(a ?= ?1)? ?\\}?",
        1 => any_text(),
    ]
}

const KNOWN_KEYS: [&str; 12] = [
    "server",
    "username",
    "password",
    "datacenter",
    "datastore",
    "folder",
    "insecure_transport",
    "resource_pool",
    "network",
    "public_key_path",
    "private_key_path",
    "key_name",
];

fn toml_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KNOWN_KEYS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(vec!["typo_key", "\"quoted key\"", "a.b", "é"])
            .prop_map(str::to_owned),
        "[a-z_]{1,10}",
    ]
}

/// Text shaped like pycloudlib.toml: sections, key/value lines and
/// comments, often slightly wrong.
fn toml_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        12 => (toml_key(), prop::sample::select(vec![" = ", "=", " = ", " = ", " = ", " ", " == "]), toml_value())
            .prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
        1 => prop::sample::select(vec![
            "[vmware]", "[ec2]", "[[vmware]]", "[vmware", "[vmware.sub]", "vmware = 1",
            "# comment é", "", "\t", "[vmware] # x",
        ])
        .prop_map(str::to_owned),
        1 => any_text(),
    ];
    (
        prop::sample::select(vec![
            "[vmware]\n",
            "",
            "[ec2]\nregion = \"x\"\n[vmware]\n",
            "\u{feff}[vmware]\n",
        ]),
        prop::collection::vec(line, 0..6),
        prop::sample::select(vec!["\n", "\r\n"]),
    )
        .prop_map(|(head, lines, end)| format!("{head}{}", lines.join(end)))
}

/// A `[vmware]` section holding each known key once (or not), mostly
/// with string values: it reaches the type checks, the user info in
/// `server` and the origins of a complete configuration.
fn vmware_section() -> impl Strategy<Value = String> {
    let entry = prop::option::weighted(
        0.9,
        prop_oneof![
            16 => "[a-zA-Z0-9 /._:é-]{1,12}".prop_map(|v| format!("\"{v}\"")),
            3 => "(https?://)?[a-z%:]{0,8}@[a-z]{1,6}(/sdk)?".prop_map(|v| format!("\"{v}\"")),
            1 => toml_value(),
        ],
    );
    let insecure = prop::option::of(prop_oneof![
        4 => "true|false",
        1 => toml_value(),
    ]);
    (prop::collection::vec(entry, KNOWN_KEYS.len()), insecure).prop_map(|(values, insecure)| {
        let mut text = String::from("[vmware]\n");
        for (key, value) in KNOWN_KEYS.iter().zip(values) {
            let value = if *key == "insecure_transport" {
                insecure.clone()
            } else {
                value
            };
            if let Some(value) = value {
                let _ = writeln!(text, "{key} = {value}");
            }
        }
        text
    })
}

// ----- URLs ----------------------------------------------------------------

fn scheme() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "https://", "http://", "vc_1://"]).prop_map(str::to_owned)
}

fn host() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{1,12}(:[0-9]{1,5})?|\\[::1\\](:[0-9]{1,5})?"
}

fn url_tail() -> impl Strategy<Value = String> {
    "(/sdk)?(\\?x=1)?(#f)?"
}

/// Text shaped like a `server` value, often with broken user info.
fn server_like() -> impl Strategy<Value = String> {
    prop_oneof![
        (scheme(), "[a-zA-Z0-9%:@/?#.é-]{0,20}", host(), url_tail())
            .prop_map(|(s, u, h, t)| format!("{s}{u}@{h}{t}")),
        (
            scheme(),
            "[a-z]{0,4}(%[0-9a-fA-FzZ]{0,2}){0,3}:[a-z]{0,4}(%[0-9a-fA-FzZ%]{0,3}){0,3}",
            host(),
            url_tail()
        )
            .prop_map(|(s, u, h, t)| format!("{s}{u}@{h}{t}")),
        "[a-z:/@%?#é]{0,16}",
        any_text(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_files_of_any_text_load_or_point_at_the_problem(
        text in prop_oneof![any_text(), toml_like(), vmware_section()],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let path = root.join("pycloudlib.toml");
        std::fs::write(&path, &text).unwrap();
        let env = Environment::from_pairs([("HOME", root.join("home").as_str())]);
        let result = Loader::with_environment(env)
            .system_file(root.join("none.toml"))
            .file(path.clone())
            .load();
        match result {
            Ok(loaded) => prop_assert_eq!(loaded.file.as_ref(), Some(&path)),
            Err(e) => {
                prop_assert!(e.to_string().contains(path.as_str()), "{e}");
                if let ConfigError::Toml { line, column, .. } = &e {
                    prop_assert!(*line >= 1 && *column >= 1, "{e}");
                    prop_assert!(*line <= text.split('\n').count(), "{e}\n{text:?}");
                }
            }
        }
    }

    #[test]
    fn config_files_never_show_the_password(
        text in prop_oneof![toml_like(), vmware_section()],
        password in password(),
        quote in prop::sample::select(vec!["\"", "'", "\"\"\"", ""]),
        in_url in any::<bool>(),
        at_line in any::<usize>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let path = root.join("pycloudlib.toml");
        let secret_line = if in_url {
            format!("server = {quote}https://me:{}@vc/sdk{quote}", escape_all(&password))
        } else {
            format!("password = {quote}{password}{quote}")
        };
        let mut lines: Vec<&str> = text.split('\n').collect();
        let at = at_line % (lines.len() + 1);
        lines.insert(at, &secret_line);
        let text = lines.join("\n");
        std::fs::write(&path, &text).unwrap();
        let env = Environment::from_pairs([("HOME", root.join("home").as_str())]);
        let shown = match Loader::with_environment(env).file(path.clone()).load() {
            Ok(loaded) => format!("{loaded:?} {:?} {}", loaded.config, loaded.config.server_display()),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(hides(&shown, &password), "{shown}");
    }

    #[test]
    fn govc_variables_of_any_value_load_or_name_the_variable(
        values in prop::collection::vec(
            prop::option::weighted(0.85, prop_oneof![any_text(), "[a-z0-9/:.@-]{1,12}"]),
            7,
        ),
        insecure in prop::option::of(prop_oneof![
            any_text(),
            prop::sample::select(vec!["1", "t", "T", "true", "TRUE", "True", "0", "f", "F", "false", "FALSE", "False", "yes", "tRue"])
                .prop_map(str::to_owned),
        ]),
        password in password(),
        password_in_url in any::<bool>(),
        config_name in prop::option::weighted(0.2, any_text()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let vars = [GOVC_URL, GOVC_USERNAME, GOVC_DATACENTER, GOVC_DATASTORE, GOVC_FOLDER,
            GOVC_RESOURCE_POOL, GOVC_NETWORK];
        let mut env = Environment::from_pairs([("HOME", root.join("home").as_str())]);
        for (var, value) in vars.iter().zip(&values) {
            if let Some(v) = value {
                env = env.with(*var, v.clone());
            }
        }
        if password_in_url {
            let host = values[0].clone().unwrap_or_default().replace(['@', '/', '?', '#'], "");
            env = env.with(GOVC_URL, format!("https://me:{}@{host}/sdk", escape_all(&password)));
        } else {
            env = env.with(GOVC_PASSWORD, password.clone());
        }
        env = match &config_name {
            Some(name) => env.with(PYCLOUDLIB_CONFIG, root.join("cfg").join(name).to_string()),
            None => env.without(PYCLOUDLIB_CONFIG),
        };
        if let Some(v) = &insecure {
            env = env.with(GOVC_INSECURE, v.clone());
        }
        let result = Loader::with_environment(env.clone())
            .system_file(root.join("none.toml"))
            .load();
        let shown = match &result {
            Ok(loaded) => {
                let login = loaded.config.login();
                prop_assert_eq!(login.password.expose(), password.as_str());
                format!("{loaded:?} {login:?} {}", loaded.config.server_display())
            }
            Err(e) => {
                if let ConfigError::BadEnv { var, value, .. } = e {
                    prop_assert_eq!(*var, GOVC_INSECURE);
                    prop_assert_eq!(Some(value), insecure.as_ref());
                    prop_assert!(e.to_string().contains(GOVC_INSECURE), "{e}");
                }
                format!("{e} {e:?}")
            }
        };
        prop_assert!(hides(&shown, &password), "{shown}");
        prop_assert!(hides(&format!("{env:?}"), &password), "{env:?}");
        // No file was named: the insecure flag decides alone whether the
        // variables are usable.
        if config_name.is_none() {
            let insecure_ok = insecure.as_deref().is_none_or(|v| {
                v.is_empty() || ["1", "t", "T", "true", "TRUE", "True", "0", "f", "F", "false", "FALSE", "False"].contains(&v)
            });
            if !insecure_ok {
                let is_bad_env = matches!(result, Err(ConfigError::BadEnv { .. }));
                prop_assert!(is_bad_env, "{shown}");
            }
        }
    }

    #[test]
    fn urls_with_user_info_give_back_their_parts(
        scheme in scheme(),
        user in any_text(),
        password in password(),
        host in host(),
        tail in url_tail(),
    ) {
        let raw = format!("{scheme}{}:{}@{host}{tail}", escape_all(&user), escape_all(&password));
        let url = ServerUrl::parse(&raw).unwrap();
        let address = format!("{scheme}{host}{tail}");
        prop_assert_eq!(url.address(), address.as_str());
        prop_assert_eq!(url.username(), Some(user.as_str()).filter(|u| !u.is_empty()));
        prop_assert_eq!(url.password().map(Secret::expose), Some(password.as_str()));
        prop_assert_eq!(redact(&raw), address);
        prop_assert!(hides(&format!("{url} {url:?}"), &password), "{url:?}");
        let config = VmwareConfig { server: raw.clone(), ..VmwareConfig::default() };
        let login = config.login();
        prop_assert_eq!(login.address, url.address());
        prop_assert_eq!(login.password.expose(), password.as_str());
        let shown = format!("{config:?} {}", config.server_display());
        prop_assert!(hides(&shown, &password), "{shown}");
    }

    #[test]
    fn any_server_value_parses_or_is_refused_without_showing_it(
        raw in server_like(),
        username in any_text(),
        password in any_text(),
    ) {
        let redacted = redact(&raw);
        prop_assert!(!redacted.contains('@'), "{redacted:?}");
        match ServerUrl::parse(&raw) {
            Ok(url) => {
                // The user info ends at the last `@` of the host part; redact
                // hides up to the last `@` of all.
                prop_assert!(redacted.len() <= url.address().len());
                if raw.matches('@').count() == 1 {
                    prop_assert_eq!(redacted.as_str(), url.address());
                }
                prop_assert!(url.address().len() <= raw.len());
                if !raw.contains('@') {
                    prop_assert_eq!(url.address(), raw.as_str());
                    prop_assert_eq!(url.username(), None);
                }
            }
            Err(e) => {
                // The message is fixed text: nothing of the value.
                prop_assert!(!format!("{e} {e:?}").is_empty(), "{e:?}");
            }
        }
        let config = VmwareConfig {
            server: raw.clone(),
            username: username.clone(),
            password: Secret::new(password.clone()),
            ..VmwareConfig::default()
        };
        let login = config.login();
        if !username.is_empty() {
            prop_assert_eq!(login.username, username);
        }
        if !password.is_empty() {
            prop_assert_eq!(login.password.expose(), password.as_str());
        }
        let _ = config.server_display();
    }
}
