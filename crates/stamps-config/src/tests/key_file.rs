//! The key file of the data directory, and the base signing key.

use super::*;

#[test]
fn key_file_is_generated_private_with_256_bits_then_reused() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("nested").join("data");
    let settings = settings_in(&data_dir);
    let path = data_dir.join(KEY_FILE_NAME);

    let first = resolve_signing_key(&settings).unwrap();
    assert_eq!(first.source, KeySource::Generated(path.clone()));
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&data_dir), 0o700);
    }

    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 44, "{text:?}");
    let (secret, newline) = text.split_at(43);
    assert_eq!(newline, "\n");
    assert_eq!(first.key.expose_secret(), secret.as_bytes());
    assert_eq!(base64url_decode(secret).len(), 32);
    assert!(!first.key.is_weak());

    let again = resolve_signing_key(&settings).unwrap();
    assert_eq!(again.source, KeySource::Loaded(path.clone()));
    assert_eq!(again.key, first.key);

    // Its content works as a configured secret, to the same key.
    let configured = load_env(&[("STAMPS_JWT__SECRET", secret)]).unwrap();
    assert_eq!(resolve_signing_key(&configured).unwrap().key, first.key);

    // Another data directory gets another secret; no temporary is left.
    let other = resolve_signing_key(&settings_in(&root.path().join("other"))).unwrap();
    assert_ne!(other.key, first.key);
    let names: Vec<_> = fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, [KEY_FILE_NAME]);
}

#[test]
fn a_configured_secret_wins_over_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    settings.jwt.secret = Some(SecretString::from(STRONG));
    let resolved = resolve_signing_key(&settings).unwrap();
    assert_eq!(resolved.source, KeySource::Configured);
    assert_eq!(resolved.key.expose_secret(), STRONG.as_bytes());
    assert!(!dir.path().join(KEY_FILE_NAME).exists());

    // Settings built by hand are checked too.
    settings.jwt.secret = Some(SecretString::from("short"));
    let error = resolve_signing_key(&settings).unwrap_err();
    assert!(matches!(error, SettingsError::WeakSecret { .. }), "{error}");
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_in(dir.path());
    resolve_signing_key(&settings).unwrap();
    let path = dir.path().join(KEY_FILE_NAME);
    set_mode(&path, 0o644);
    let error = resolve_signing_key(&settings).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "key file {0} has mode 0644: it must give no permission to group or others (chmod 600 {0})",
            path.display()
        )
    );
    set_mode(&path, 0o604);
    assert!(resolve_signing_key(&settings).is_err());
    set_mode(&path, 0o400);
    assert!(resolve_signing_key(&settings).is_ok());
}

#[test]
fn empty_or_broken_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_in(dir.path());
    let path = dir.path().join(KEY_FILE_NAME);
    for content in [&b""[..], b"\n", b"\r\n\n"] {
        fs::write(&path, content).unwrap();
        set_mode(&path, 0o600);
        let shown = resolve_signing_key(&settings).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!("invalid key file {}: it is empty", path.display())),
            "{shown}"
        );
    }
    fs::write(&path, [0xff_u8; 40]).unwrap();
    let shown = resolve_signing_key(&settings).unwrap_err().to_string();
    assert!(shown.ends_with("it is not UTF-8 text"), "{shown}");

    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let shown = resolve_signing_key(&settings).unwrap_err().to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
}

#[test]
fn operator_written_key_files_are_trimmed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    let path = dir.path().join(KEY_FILE_NAME);
    fs::write(&path, format!("{STRONG}\r\n")).unwrap();
    set_mode(&path, 0o600);
    let resolved = resolve_signing_key(&settings).unwrap();
    assert_eq!(resolved.key.expose_secret(), STRONG.as_bytes());
    assert_eq!(resolved.source, KeySource::Loaded(path.clone()));

    fs::write(&path, "TESTJWT\n").unwrap();
    let shown = resolve_signing_key(&settings).unwrap_err().to_string();
    assert!(
        shown.starts_with(&format!(
            "the secret of key file {} is too short (7 bytes)",
            path.display()
        )),
        "{shown}"
    );
    settings.jwt.allow_weak_secret = true;
    assert_eq!(
        resolve_signing_key(&settings).unwrap().key.expose_secret(),
        b"TESTJWT"
    );
}

#[test]
fn racing_processes_agree_on_one_secret() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_in(&dir.path().join("data"));
    let results: Vec<ResolvedKey> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| resolve_signing_key(&settings).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let generated = results
        .iter()
        .filter(|r| matches!(r.source, KeySource::Generated(_)))
        .count();
    assert_eq!(generated, 1);
    assert!(results.iter().all(|r| r.key == results[0].key));
}

#[test]
fn the_base_key_is_the_stores_on_a_shared_store_and_the_key_file_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Settings {
        store: StoreSettings::Postgres {
            url: "postgres://db/stamps".to_owned().into(),
        },
        ..settings_in(dir.path())
    };
    // A shared store without jwt.secret: the store's keys, no key file.
    let base = existing_base_signing_key(&shared).unwrap().unwrap();
    assert_eq!(base.source, KeySource::Store);
    assert_eq!(base_signing_key(&shared).unwrap().source, KeySource::Store);
    assert!(!shared.key_file_path().exists());
    // With jwt.secret, the secret, on either store.
    let configured = Settings {
        jwt: JwtSettings {
            secret: Some(STRONG.to_owned().into()),
            ..shared.jwt.clone()
        },
        ..shared.clone()
    };
    let base = existing_base_signing_key(&configured).unwrap().unwrap();
    assert_eq!(base.source, KeySource::Configured);
    // The embedded store: read only, nothing yet; made when asked to.
    let sled = settings_in(dir.path());
    assert!(existing_base_signing_key(&sled).unwrap().is_none());
    let made = base_signing_key(&sled).unwrap();
    assert!(matches!(made.source, KeySource::Generated(_)));
    let read = existing_base_signing_key(&sled).unwrap().unwrap();
    assert_eq!(
        (read.key, read.source),
        (made.key, KeySource::Loaded(sled.key_file_path()))
    );
}

#[test]
fn the_lookup_key_is_a_private_key_file_on_sled_and_a_setting_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_in(dir.path());
    // Read-only commands never make it.
    assert!(existing_lookup_key(&settings).unwrap().is_none());
    assert!(!lookup_key_path(&settings).exists());
    let made = lookup_key(&settings).unwrap().unwrap();
    assert!(matches!(made.source, KeySource::Generated(_)));
    #[cfg(unix)]
    assert_eq!(
        fs::metadata(lookup_key_path(&settings))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let read = existing_lookup_key(&settings).unwrap().unwrap();
    assert!(matches!(read.source, KeySource::Loaded(_)));
    let text = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";
    assert_eq!(made.key.digest(text), read.key.digest(text));
    // Apart from the JWT key: one does not give the other.
    assert!(!settings.key_file_path().exists());

    // A configured secret wins; on PostgreSQL it is the only source.
    let configured = load_env(&[
        ("STAMPS_DATA_DIR", &dir.path().display().to_string()),
        ("STAMPS_TOKENS__LOOKUP_SECRET", STRONG),
    ])
    .unwrap();
    assert!(!format!("{configured:?}").contains(STRONG));
    let resolved = lookup_key(&configured).unwrap().unwrap();
    assert_eq!(resolved.source, KeySource::Configured);
    assert_ne!(resolved.key.digest(text), made.key.digest(text));
    let shared = load_env(&[
        ("STAMPS_STORE__BACKEND", "postgres"),
        ("STAMPS_STORE__URL", "postgres://stamps@127.0.0.1/stamps"),
        (
            "STAMPS_DATA_DIR",
            &dir.path().join("replica").display().to_string(),
        ),
    ])
    .unwrap();
    assert!(lookup_key(&shared).unwrap().is_none());
    assert!(!dir.path().join("replica").exists());

    // Never weak, whatever jwt.allow_weak_secret says.
    let shown = error_of(load_env(&[
        ("STAMPS_TOKENS__LOOKUP_SECRET", WEAK),
        ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
    ]));
    assert!(shown.contains("tokens.lookup_secret"), "{shown}");
    assert!(!shown.contains(WEAK), "{shown}");
}
