//! Loading and validating the settings: defaults, file, environment,
//! and a clear error for every bad value.

use super::*;

#[test]
fn defaults_without_file_or_env() {
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(settings.data_dir, PathBuf::from("./stamps-data"));
    assert!(settings.jwt.secret.is_none());
    assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(86_400));
    assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(30));
    assert!(!settings.jwt.allow_weak_secret);
    assert!(!settings.jwt.secret_is_weak());
    assert!(matches!(settings.store, StoreSettings::Sled));
    assert_eq!(
        format!("{settings:?}"),
        format!("{:?}", Settings::default())
    );
    assert_eq!(
        settings.key_file_path(),
        PathBuf::from("./stamps-data/jwt-secret")
    );
}

#[test]
fn file_values_are_read() {
    let settings = load_file(&format!(
        r#"
        listen = "0.0.0.0:0"
        data_dir = "/var/lib/stamps"
        [jwt]
        secret = "{STRONG}"
        lifetime = "15m"
        leeway = "5s"
        allow_weak_secret = false
        [store]
        backend = "postgres"
        url = "postgres://stamps:pw@127.0.0.1/stamps"
        "#
    ))
    .unwrap();
    assert_eq!(settings.listen, "0.0.0.0:0".parse().unwrap());
    assert_eq!(settings.data_dir, PathBuf::from("/var/lib/stamps"));
    assert_eq!(
        settings.jwt.secret.as_ref().unwrap().expose_secret(),
        STRONG
    );
    assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(900));
    assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(5));
    match &settings.store {
        StoreSettings::Postgres { url } => {
            assert_eq!(url.expose_secret(), "postgres://stamps:pw@127.0.0.1/stamps");
        }
        StoreSettings::Sled => panic!("expected postgres"),
    }
    let shown = format!("{settings:?}");
    assert!(!shown.contains(STRONG) && !shown.contains("pw@"), "{shown}");
}

#[test]
fn hardening_defaults_and_file_values() {
    let settings = load_env(&[]).unwrap();
    assert!(settings.proxy.trusted.is_empty());
    assert!(settings.rate_limit.enabled);
    // CONTRACT §1.4: at least 60 failures a minute per address.
    assert_eq!(settings.rate_limit.per_address.get(), 60);
    assert_eq!(settings.rate_limit.window, Duration::from_secs(60));
    assert_eq!(settings.rate_limit.per_token.get(), 10);
    assert!(settings.tls.is_none());
    assert!(!settings.http.require_https);
    assert_eq!(settings.http.hsts_max_age, Duration::from_secs(31_536_000));
    assert_eq!(settings.http.max_connections, 10_000);
    assert_eq!(settings.http.max_connections_per_address, 1_000);

    let settings = load_file(
        r#"
        [proxy]
        trusted = ["127.0.0.1/32", "10.0.0.0/8"]
        [rate_limit]
        enabled = true
        per_address = 100
        per_token = 5
        window = "5m"
        [tls]
        cert = "cert.pem"
        key = "key.pem"
        [http]
        require_https = true
        max_connections = 500
        header_timeout = "500ms"
        "#,
    )
    .unwrap();
    assert_eq!(settings.proxy.trusted.nets().len(), 2);
    assert_eq!(settings.rate_limit.per_address.get(), 100);
    assert_eq!(settings.rate_limit.per_token.get(), 5);
    assert_eq!(settings.rate_limit.window, Duration::from_secs(300));
    assert_eq!(settings.tls.unwrap().key, PathBuf::from("key.pem"));
    assert!(settings.http.require_https);
    assert_eq!(settings.http.max_connections, 500);
    // Unset, the per-address cap follows: a tenth.
    assert_eq!(settings.http.max_connections_per_address, 50);
    assert_eq!(settings.http.header_timeout, Duration::from_millis(500));
    // The rest keeps its defaults.
    assert_eq!(settings.http.body_timeout, Duration::from_secs(10));
}

#[test]
fn bad_hardening_values_are_refused_naming_the_setting() {
    for (pairs, expect) in [
        (
            &[("STAMPS_PROXY__TRUSTED", "10.0.0.0/8,localhost")][..],
            "invalid proxy.trusted \"localhost\": expected an IP address or a network",
        ),
        (
            &[("STAMPS_RATE_LIMIT__PER_ADDRESS", "0")][..],
            "invalid rate_limit.per_address \"0\": expected a whole number from 1 to 1000000",
        ),
        (
            &[("STAMPS_RATE_LIMIT__PER_TOKEN", "ten")][..],
            "invalid rate_limit.per_token \"ten\"",
        ),
        (
            &[("STAMPS_RATE_LIMIT__WINDOW", "500ms")][..],
            "invalid rate_limit.window \"500ms\": must be between 1 second and 24 hours",
        ),
        (
            &[("STAMPS_RATE_LIMIT__ENABLED", "sometimes")][..],
            "invalid rate_limit.enabled \"sometimes\": expected true or false",
        ),
        (
            &[("STAMPS_TLS__CERT", "cert.pem")][..],
            "tls.cert is set but tls.key is not: TLS needs both",
        ),
        (
            &[("STAMPS_TLS__KEY", "key.pem")][..],
            "tls.key is set but tls.cert is not: TLS needs both",
        ),
        (
            &[("STAMPS_HTTP__MAX_CONNECTIONS", "0")][..],
            "invalid http.max_connections \"0\"",
        ),
        (
            &[("STAMPS_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "-1")][..],
            "invalid http.max_connections_per_address \"-1\": expected a whole number from 0 to 1000000",
        ),
        (
            &[("STAMPS_HTTP__HEADER_TIMEOUT", "0s")][..],
            "invalid http.header_timeout \"0s\": must be between 1 millisecond and 1 hour",
        ),
        (
            &[("STAMPS_HTTP__BODY_TIMEOUT", "2h")][..],
            "invalid http.body_timeout \"2h\"",
        ),
        (
            &[("STAMPS_HTTP__REQUIRE_HTTPS", "yes")][..],
            "invalid http.require_https \"yes\"",
        ),
    ] {
        let shown = error_of(load_env(pairs));
        assert!(shown.starts_with(expect), "{shown}");
    }
    let shown = error_of(load_file("[proxy]\ntrusted = \"10.0.0.0/8\"\n"));
    assert!(shown.starts_with("invalid proxy.trusted in "), "{shown}");
    assert!(shown.ends_with("expected an array of strings"), "{shown}");
    let shown = error_of(load_file("[proxy]\ntrusted = [1]\n"));
    assert!(shown.ends_with("expected an array of strings"), "{shown}");
    // Numbers the file holds but no setting takes are shown as written.
    for (written, shown_as) in [("-1", "\"-1\""), ("2.5", "\"2.5\""), ("true", "\"true\"")] {
        let shown = error_of(load_file(&format!(
            "[rate_limit]\nper_address = {written}\n"
        )));
        assert_eq!(
            shown,
            format!(
                "invalid rate_limit.per_address {shown_as}: expected a whole number from 1 to 1000000"
            )
        );
    }
    // An empty list, and empty TLS paths from the environment, are unset.
    let settings = load_file("[proxy]\ntrusted = []\n").unwrap();
    assert!(settings.proxy.trusted.is_empty());
    let settings = load_env(&[("STAMPS_TLS__CERT", ""), ("STAMPS_TLS__KEY", "")]).unwrap();
    assert!(settings.tls.is_none());
}

#[test]
fn metrics_and_log_settings() {
    // Off and text by default.
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.metrics, MetricsSettings::default());
    assert!(!settings.metrics.enabled);
    assert_eq!(settings.log.format, LogFormat::Text);

    let settings =
        load_file("[metrics]\nenabled = true\nlisten = \"[::1]:0\"\n[log]\nformat = \"json\"\n")
            .unwrap();
    assert!(settings.metrics.enabled);
    assert_eq!(settings.metrics.listen, Some("[::1]:0".parse().unwrap()));
    assert_eq!(settings.log.format, LogFormat::Json);
    // On the main listener; an empty listen from the environment is unset.
    let settings = load_env(&[
        ("STAMPS_METRICS__ENABLED", "true"),
        ("STAMPS_METRICS__LISTEN", ""),
    ])
    .unwrap();
    assert_eq!(settings.metrics.listen, None);

    for (pairs, expect) in [
        (
            &[("STAMPS_METRICS__ENABLED", "on")][..],
            "invalid metrics.enabled \"on\": expected true or false",
        ),
        (
            &[("STAMPS_METRICS__LISTEN", "127.0.0.1:9090")][..],
            "invalid metrics.listen \"127.0.0.1:9090\": metrics.enabled is false",
        ),
        (
            &[
                ("STAMPS_METRICS__ENABLED", "true"),
                ("STAMPS_METRICS__LISTEN", "localhost:9090"),
            ][..],
            "invalid metrics.listen \"localhost:9090\": expected an IP address and a port",
        ),
        (
            &[
                ("STAMPS_METRICS__ENABLED", "true"),
                ("STAMPS_METRICS__LISTEN", "127.0.0.1:8080"),
            ][..],
            "invalid metrics.listen \"127.0.0.1:8080\": it is the main listener's address",
        ),
        (
            &[("STAMPS_LOG__FORMAT", "xml")][..],
            "invalid log.format \"xml\": expected \"text\" or \"json\"",
        ),
    ] {
        let shown = error_of(load_env(pairs));
        assert!(shown.starts_with(expect), "{shown}");
    }
    let shown = error_of(load_file("[metrics]\nlsten = \"127.0.0.1:9090\"\n"));
    assert!(shown.contains("unknown key \"metrics.lsten\""), "{shown}");
    assert!(shown.contains("did you mean \"metrics.listen\""), "{shown}");
}

#[test]
fn audit_settings_default_to_30_days_with_jwts_issued_and_0s_keeps_forever() {
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.audit, AuditPolicy::default());
    assert_eq!(
        settings.audit.retention,
        Some(Duration::from_secs(30 * 86_400))
    );
    assert!(settings.audit.jwt_issued);
    let settings = load_file("[audit]\nretention = \"0s\"\njwt_issued = false\n").unwrap();
    assert_eq!(settings.audit.retention, None);
    assert!(!settings.audit.jwt_issued);
    let settings = load_env(&[("STAMPS_AUDIT__RETENTION", "90d")]).unwrap();
    assert_eq!(
        settings.audit.retention,
        Some(Duration::from_secs(90 * 86_400))
    );
    for (pairs, expect) in [
        (
            &[("STAMPS_AUDIT__RETENTION", "a month")][..],
            "invalid audit.retention \"a month\"",
        ),
        (
            &[("STAMPS_AUDIT__JWT_ISSUED", "sometimes")][..],
            "invalid audit.jwt_issued \"sometimes\": expected true or false",
        ),
    ] {
        let shown = error_of(load_env(pairs));
        assert!(shown.starts_with(expect), "{shown}");
    }
}

#[test]
fn the_issuance_quota_is_600_per_window_by_default_and_0_lifts_it() {
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.rate_limit.issue_per_token, NonZeroU32::new(600));
    // Not lifted by turning the failure limits off.
    let settings = load_env(&[("STAMPS_RATE_LIMIT__ENABLED", "false")]).unwrap();
    assert_eq!(settings.rate_limit.issue_per_token, NonZeroU32::new(600));
    let settings = load_file("[rate_limit]\nissue_per_token = 0\n").unwrap();
    assert_eq!(settings.rate_limit.issue_per_token, None);
    let shown = error_of(load_env(&[("STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN", "-1")]));
    assert!(
        shown.starts_with("invalid rate_limit.issue_per_token \"-1\""),
        "{shown}"
    );
}

#[test]
fn a_partial_section_keeps_the_other_defaults() {
    let settings = load_file("[jwt]\nleeway = \"1m\"\n").unwrap();
    assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(86_400));
    assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(60));
    assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
}

#[test]
fn env_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[jwt]\nlifetime = \"1h\"\nleeway = \"10s\"\n",
    );
    let settings = Settings::load_from(
        Some(&path),
        env(&[
            ("STAMPS_LISTEN", "[::1]:0"),
            ("STAMPS_JWT__LIFETIME", "2h"),
            ("STAMPS_JWT__SECRET", STRONG),
        ]),
    )
    .unwrap();
    assert_eq!(settings.listen, "[::1]:0".parse().unwrap());
    assert_eq!(settings.data_dir, PathBuf::from("/from/file"));
    assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(7200));
    assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(10));
    assert_eq!(
        settings.jwt.secret.as_ref().unwrap().expose_secret(),
        STRONG
    );
}

#[test]
fn every_env_var_sets_its_setting() {
    let settings = load_env(&[
        ("STAMPS_LISTEN", "10.0.0.1:80"),
        ("STAMPS_DATA_DIR", "/srv/stamps"),
        ("STAMPS_JWT__SECRET", WEAK),
        ("STAMPS_JWT__LIFETIME", "30m"),
        ("STAMPS_JWT__LEEWAY", "0s"),
        ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
        ("STAMPS_STORE__BACKEND", "postgres"),
        ("STAMPS_STORE__URL", "postgres://db/stamps"),
        ("STAMPS_PROXY__TRUSTED", "127.0.0.1/32, 10.0.0.0/8,::1"),
        ("STAMPS_RATE_LIMIT__ENABLED", "false"),
        ("STAMPS_RATE_LIMIT__PER_ADDRESS", "7"),
        ("STAMPS_RATE_LIMIT__PER_TOKEN", "3"),
        ("STAMPS_RATE_LIMIT__WINDOW", "10m"),
        ("STAMPS_TLS__CERT", "/etc/stamps/cert.pem"),
        ("STAMPS_TLS__KEY", "/etc/stamps/key.pem"),
        ("STAMPS_HTTP__REQUIRE_HTTPS", "true"),
        ("STAMPS_HTTP__HSTS_MAX_AGE", "1h"),
        ("STAMPS_HTTP__MAX_CONNECTIONS", "64"),
        ("STAMPS_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ("STAMPS_HTTP__HEADER_TIMEOUT", "2s"),
        ("STAMPS_HTTP__BODY_TIMEOUT", "3s"),
        ("STAMPS_HTTP__KEEP_ALIVE", "0s"),
        ("STAMPS_HTTP__DISCONNECT_TIMEOUT", "500ms"),
        ("STAMPS_METRICS__ENABLED", "true"),
        ("STAMPS_METRICS__LISTEN", "127.0.0.1:9100"),
        ("STAMPS_LOG__FORMAT", "JSON"),
    ])
    .unwrap();
    assert_eq!(
        settings.metrics,
        MetricsSettings {
            enabled: true,
            listen: Some("127.0.0.1:9100".parse().unwrap()),
        }
    );
    assert_eq!(settings.log.format, LogFormat::Json);
    let nets: Vec<String> = settings
        .proxy
        .trusted
        .nets()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
    assert!(!settings.rate_limit.enabled);
    assert_eq!(settings.rate_limit.per_address.get(), 7);
    assert_eq!(settings.rate_limit.per_token.get(), 3);
    assert_eq!(settings.rate_limit.window, Duration::from_secs(600));
    assert_eq!(
        settings.tls,
        Some(TlsSettings {
            cert: PathBuf::from("/etc/stamps/cert.pem"),
            key: PathBuf::from("/etc/stamps/key.pem"),
        })
    );
    let http = &settings.http;
    assert!(http.require_https);
    assert_eq!(http.hsts_max_age, Duration::from_secs(3600));
    assert_eq!(http.max_connections, 64);
    assert_eq!(http.max_connections_per_address, 0);
    assert_eq!(http.header_timeout, Duration::from_secs(2));
    assert_eq!(http.body_timeout, Duration::from_secs(3));
    assert_eq!(http.keep_alive, Duration::ZERO);
    assert_eq!(http.disconnect_timeout, Duration::from_millis(500));
    assert_eq!(settings.listen, "10.0.0.1:80".parse().unwrap());
    assert_eq!(settings.data_dir, PathBuf::from("/srv/stamps"));
    assert_eq!(settings.jwt.secret.as_ref().unwrap().expose_secret(), WEAK);
    assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(1800));
    assert_eq!(settings.jwt.rules.leeway(), Duration::ZERO);
    assert!(settings.jwt.allow_weak_secret);
    assert!(settings.jwt.secret_is_weak());
    assert!(matches!(settings.store, StoreSettings::Postgres { .. }));
}

#[test]
fn allow_weak_secret_from_env_is_a_bool_and_nonsense_is_refused() {
    for (value, expected) in [("true", true), ("false", false), ("TRUE", true)] {
        let settings = load_env(&[("STAMPS_JWT__ALLOW_WEAK_SECRET", value)]).unwrap();
        assert_eq!(settings.jwt.allow_weak_secret, expected, "{value}");
    }
    for value in ["maybe", "1", "yes", ""] {
        let shown = error_of(load_env(&[("STAMPS_JWT__ALLOW_WEAK_SECRET", value)]));
        assert_eq!(
            shown,
            format!("invalid jwt.allow_weak_secret {value:?}: expected true or false")
        );
    }
}

#[test]
fn allow_weak_secret_in_the_file_is_a_bool() {
    let settings = load_file("[jwt]\nallow_weak_secret = true\n").unwrap();
    assert!(settings.jwt.allow_weak_secret);
    let settings = load_file("[jwt]\nallow_weak_secret = \"false\"\n").unwrap();
    assert!(!settings.jwt.allow_weak_secret);
    let shown = error_of(load_file("[jwt]\nallow_weak_secret = 1\n"));
    assert!(shown.contains("jwt.allow_weak_secret"), "{shown}");
    assert!(shown.contains("expected true or false"), "{shown}");
}

#[test]
fn numeric_looking_secrets_stay_strings() {
    let digits = "00012345678901234567890123456789012345";
    let settings = load_env(&[("STAMPS_JWT__SECRET", digits)]).unwrap();
    assert_eq!(settings.jwt.secret.unwrap().expose_secret(), digits);
    // (Of low variety: allowed here, only the type is in question.)
    let settings = load_env(&[
        ("STAMPS_JWT__SECRET", "1e400000000000000000000000000000000"),
        ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
    ])
    .unwrap();
    assert_eq!(
        settings.jwt.secret.unwrap().expose_secret(),
        "1e400000000000000000000000000000000"
    );
}

#[test]
fn unknown_env_vars_are_ignored() {
    let settings = load_env(&[
        ("STAMPS_FOO", "bar"),
        ("STAMPS_JWT__SECRETT", "x"),
        ("STAMPS_JWT", "x"),
        ("STAMPS_TLS__CERTIFICATE", "x"),
        ("STAMPS_RATE_LIMIT", "x"),
        ("STAMPS__LISTEN", "x"),
        ("OTHER_LISTEN", "x"),
        ("PATH", "/usr/bin"),
    ])
    .unwrap();
    assert_eq!(
        format!("{settings:?}"),
        format!("{:?}", Settings::default())
    );
}

#[test]
fn known_keys_match_the_raw_fields_exactly() {
    fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let full = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&full, inner, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }
    let json = serde_json::to_value(RawSettings::default()).unwrap();
    let mut fields = BTreeSet::new();
    flatten("", &json, &mut fields);
    let known: BTreeSet<String> = KNOWN_KEYS.iter().map(|key| (*key).to_owned()).collect();
    assert_eq!(fields, known);
    assert_eq!(
        env_var_name("jwt.allow_weak_secret"),
        "STAMPS_JWT__ALLOW_WEAK_SECRET"
    );
    assert_eq!(env_var_name("data_dir"), "STAMPS_DATA_DIR");
}

#[test]
fn unknown_file_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[jwt]\nsecrett = \"x\"\n");
    let shown = error_of(Settings::load_from(Some(&path), Vec::new()));
    assert_eq!(
        shown,
        format!(
            "unknown key \"jwt.secrett\" in {} (did you mean \"jwt.secret\"?)",
            path.display()
        )
    );

    let shown = error_of(load_file("secret = \"x\"\n"));
    assert!(shown.starts_with("unknown key \"secret\" in "), "{shown}");
    assert!(shown.ends_with("(did you mean \"jwt.secret\"?)"), "{shown}");

    let shown = error_of(load_file("[bogus]\ncert = \"x\"\n"));
    assert!(shown.starts_with("unknown key \"bogus\" in "), "{shown}");
    assert!(!shown.contains("did you mean"), "{shown}");
    let shown = error_of(load_file("[tls]\ncertificate = \"x\"\n"));
    assert!(
        shown.starts_with("unknown key \"tls.certificate\" in "),
        "{shown}"
    );

    // Keys are case-sensitive.
    let shown = error_of(load_file("Listen = \"127.0.0.1:1\"\n"));
    assert!(shown.contains("unknown key \"Listen\""), "{shown}");
    assert!(shown.contains("did you mean \"listen\""), "{shown}");
}

#[test]
fn file_keys_of_the_wrong_shape_are_errors() {
    let shown = error_of(load_file("jwt = 5\n"));
    assert!(shown.starts_with("invalid jwt in "), "{shown}");
    assert!(shown.ends_with("expected a table of settings"), "{shown}");
    let shown = error_of(load_file("[jwt.lifetime]\nvalue = \"1h\"\n"));
    assert!(shown.starts_with("invalid jwt.lifetime in "), "{shown}");
    let shown = error_of(load_file("listen = [\"127.0.0.1:1\"]\n"));
    assert!(shown.starts_with("invalid listen in "), "{shown}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let shown = error_of(Settings::load_from(Some(&path), Vec::new()));
    assert!(
        shown.starts_with(&format!("cannot read config file {}: ", path.display())),
        "{shown}"
    );
}

#[test]
fn invalid_toml_is_one_line_without_the_offending_text() {
    let secret = "hunter2-super-secret-value-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &format!("[jwt]\nsecret = \"{secret}\n"));
    let shown = error_of(Settings::load_from(Some(&path), Vec::new()));
    assert!(
        shown.starts_with(&format!(
            "invalid TOML in {}: line 2, column",
            path.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

// --- validation --------------------------------------------------------

#[test]
fn bad_durations_are_refused() {
    let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", "0s")]));
    assert_eq!(
        shown,
        "invalid jwt.lifetime \"0s\": lifetime must be between 1 second and 366 days"
    );
    let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", "500ms")]));
    assert!(
        shown.starts_with("invalid jwt.lifetime \"500ms\": "),
        "{shown}"
    );
    let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", "400days")]));
    assert!(
        shown.starts_with("invalid jwt.lifetime \"400days\": "),
        "{shown}"
    );
    for value in ["abc", "10", "-5s", ""] {
        let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", value)]));
        assert!(
            shown.starts_with(&format!(
                "invalid jwt.lifetime {value:?}: expected a duration"
            )),
            "{shown}"
        );
    }
    let shown = error_of(load_file("[jwt]\nleeway = \"soon\"\n"));
    assert!(
        shown.starts_with("invalid jwt.leeway \"soon\": "),
        "{shown}"
    );
}

#[test]
fn leeway_must_be_below_lifetime() {
    let shown = error_of(load_env(&[
        ("STAMPS_JWT__LIFETIME", "1m"),
        ("STAMPS_JWT__LEEWAY", "60s"),
    ]));
    assert_eq!(
        shown,
        "invalid jwt.leeway \"60s\": leeway must be smaller than the lifetime (jwt.lifetime is \"1m\")"
    );
    assert!(
        load_env(&[
            ("STAMPS_JWT__LIFETIME", "1m"),
            ("STAMPS_JWT__LEEWAY", "59s")
        ])
        .is_ok()
    );
}

#[test]
fn bad_listen_is_refused_and_port_zero_accepted() {
    for value in ["abc", "127.0.0.1", "127.0.0.1:99999", "localhost:8080", ""] {
        let shown = error_of(load_env(&[("STAMPS_LISTEN", value)]));
        assert!(
            shown.starts_with(&format!("invalid listen {value:?}: expected an IP address")),
            "{shown}"
        );
    }
    let settings = load_env(&[("STAMPS_LISTEN", "127.0.0.1:0")]).unwrap();
    assert_eq!(settings.listen.port(), 0);
}

#[test]
fn empty_data_dir_is_refused() {
    let shown = error_of(load_env(&[("STAMPS_DATA_DIR", "")]));
    assert_eq!(shown, "invalid data_dir \"\": must not be empty");
}

#[test]
fn weak_secrets_are_refused_unless_allowed() {
    // From the file.
    let shown = error_of(load_file(&format!("[jwt]\nsecret = \"{WEAK}\"\n")));
    assert!(
        shown.starts_with("jwt.secret is too short (19 bytes)"),
        "{shown}"
    );
    assert!(shown.contains("allow_weak_secret"), "{shown}");
    let settings = load_file(&format!(
        "[jwt]\nsecret = \"{WEAK}\"\nallow_weak_secret = true\n"
    ))
    .unwrap();
    assert!(settings.jwt.secret_is_weak());

    // From the environment.
    let shown = error_of(load_env(&[("STAMPS_JWT__SECRET", "TESTJWT")]));
    assert!(
        shown.starts_with("jwt.secret is too short (7 bytes)"),
        "{shown}"
    );
    let settings = load_env(&[
        ("STAMPS_JWT__SECRET", "TESTJWT"),
        ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
    ])
    .unwrap();
    assert!(settings.jwt.secret_is_weak());
    let resolved = resolve_signing_key(&settings).unwrap();
    assert_eq!(resolved.key.expose_secret(), b"TESTJWT");
    assert_eq!(resolved.source, KeySource::Configured);

    // The limit is 32 bytes of UTF-8, not 32 characters.
    assert!(load_env(&[("STAMPS_JWT__SECRET", "x".repeat(31).as_str())]).is_err());
    let settings = load_env(&[("STAMPS_JWT__SECRET", "0123456789abcdefghijklmnopqrstuv")]).unwrap();
    assert!(!settings.jwt.secret_is_weak());
    assert!(load_env(&[("STAMPS_JWT__SECRET", "èéêëìíîïðñòóôõö÷")]).is_ok());
    assert!(load_env(&[("STAMPS_JWT__SECRET", "èéêëìíîïðñòóôõ")]).is_err());

    // Long enough but obviously low variety: refused, saying why.
    for (secret, why) in [
        ("x".repeat(32), "is one character repeated"),
        ("abcd".repeat(8), "repeats a pattern of 4 bytes"),
        ("0123456789".repeat(4), "repeats a pattern of 10 bytes"),
        (
            "aaaabbbbccccddddaaaabbbbccccdddx".to_owned(),
            "has only 5 distinct bytes",
        ),
    ] {
        let shown = error_of(load_env(&[("STAMPS_JWT__SECRET", secret.as_str())]));
        assert!(shown.starts_with(&format!("jwt.secret {why}")), "{shown}");
        assert!(!shown.contains(&secret), "the secret is echoed: {shown}");
        let allowed = load_env(&[
            ("STAMPS_JWT__SECRET", secret.as_str()),
            ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
        ])
        .unwrap();
        assert!(allowed.jwt.secret_is_weak());
    }
}

#[test]
fn empty_secret_is_refused_even_when_weak_ones_are_allowed() {
    for allow in ["false", "true"] {
        let shown = error_of(load_env(&[
            ("STAMPS_JWT__SECRET", ""),
            ("STAMPS_JWT__ALLOW_WEAK_SECRET", allow),
        ]));
        assert!(shown.starts_with("jwt.secret is empty"), "{shown}");
    }
}

#[test]
fn store_settings_are_checked() {
    let shown = error_of(load_env(&[("STAMPS_STORE__BACKEND", "postgres")]));
    assert_eq!(
        shown,
        "store.url is required when store.backend is \"postgres\""
    );
    let shown = error_of(load_file("[store]\nbackend = \"postgres\"\nurl = \"\"\n"));
    assert!(shown.starts_with("store.url is required"), "{shown}");
    let shown = error_of(load_env(&[("STAMPS_STORE__URL", "postgres://u:pw@db/s")]));
    assert!(
        shown.starts_with("store.url is set but store.backend is \"sled\""),
        "{shown}"
    );
    assert!(!shown.contains("pw@"), "{shown}");
    let shown = error_of(load_env(&[("STAMPS_STORE__BACKEND", "mysql")]));
    assert_eq!(
        shown,
        "invalid store.backend \"mysql\": expected \"sled\" or \"postgres\""
    );
    let settings = load_env(&[
        ("STAMPS_STORE__BACKEND", "postgres"),
        ("STAMPS_STORE__URL", "postgres://u:pw@db/s"),
    ])
    .unwrap();
    let shown = format!("{settings:?}");
    assert!(!shown.contains("pw@"), "{shown}");
}

#[test]
fn secrets_of_the_wrong_type_are_not_echoed() {
    let shown = error_of(load_file(
        "[jwt]\nsecret = [\"hunter2-hunter2-hunter2-hunter2-x\"]\n",
    ));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("jwt.secret"), "{shown}");
}

#[test]
fn error_messages_never_contain_the_secret() {
    let secret = "SeCrEt-VaLuE";
    let dir = tempfile::tempdir().unwrap();
    let mut errors = vec![
        load_env(&[("STAMPS_JWT__SECRET", secret)]).unwrap_err(),
        load_env(&[("STAMPS_JWT__SECRET", secret), ("STAMPS_LISTEN", "x")]).unwrap_err(),
        load_env(&[
            ("STAMPS_JWT__SECRET", secret),
            ("STAMPS_JWT__LIFETIME", "0s"),
        ])
        .unwrap_err(),
        load_file(&format!("[jwt]\nsecret = \"{secret}\"\nbogus = 1\n")).unwrap_err(),
        load_file(&format!("[jwt]\nsecret = \"{secret}\" x\n")).unwrap_err(),
        load_file(&format!(
            "[jwt]\nsecret = \"{secret}\"\nsecret = \"{secret}\"\n"
        ))
        .unwrap_err(),
    ];
    let key_file = dir.path().join(KEY_FILE_NAME);
    fs::write(&key_file, format!("{secret}\n")).unwrap();
    set_mode(&key_file, 0o600);
    errors.push(resolve_signing_key(&settings_in(dir.path())).unwrap_err());
    #[cfg(unix)]
    {
        set_mode(&key_file, 0o640);
        errors.push(resolve_signing_key(&settings_in(dir.path())).unwrap_err());
    }
    for error in errors {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn access_lines_are_on_by_default_and_can_be_turned_off() {
    assert!(load_env(&[]).unwrap().log.access);
    assert!(
        !load_env(&[("STAMPS_LOG__ACCESS", "false")])
            .unwrap()
            .log
            .access
    );
    assert!(!load_file("[log]\naccess = false\n").unwrap().log.access);
    assert_eq!(
        error_of(load_env(&[("STAMPS_LOG__ACCESS", "quiet")])),
        "invalid log.access \"quiet\": expected true or false"
    );
}
