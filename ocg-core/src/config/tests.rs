use std::fs;

use super::*;

fn sources(file: Option<&Path>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Sources {
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Sources {
        file: file.map(Path::to_owned),
        env: pairs(env),
        flags: pairs(flags),
    }
}

#[test]
fn defaults_match_the_documented_process_model() {
    let config = Config::load(&sources(None, &[("HOME", "/home/u")], &[])).unwrap();
    assert_eq!(config.host.to_string(), "127.0.0.1");
    assert_eq!(config.port, 55003);
    assert_eq!(config.agent_socket, Path::new("/tmp/ocg-agent.sock"));
    assert_eq!(config.pid_dir, Path::new("/tmp/ocg"));
    assert_eq!(config.data_dir, Path::new("/home/u/.ocg"));
    assert_eq!(config.embedding_port, 50000);
    assert_eq!(config.embedding_port_max, 60000);
    assert_eq!(config.gateway_url(), "http://127.0.0.1:55003");
    assert_eq!(
        config.embedding_addr_file(),
        Path::new("/tmp/ocg/ocg-embedding.addr")
    );
}

#[test]
fn precedence_is_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.config");
    fs::write(
        &file,
        "OCG_PORT=1001\nOCG_PID_DIR=/from/file\nOCG_LOG_DIR=/logs/file\n",
    )
    .unwrap();
    let config = Config::load(&sources(
        Some(&file),
        &[("OCG_PORT", "1002"), ("OCG_PID_DIR", "/from/env")],
        &[("OCG_PORT", "1003")],
    ))
    .unwrap();
    assert_eq!(config.port, 1003);
    assert_eq!(config.pid_dir, Path::new("/from/env"));
    assert_eq!(config.log_dir, Path::new("/logs/file"));
    assert_eq!(config.file(), Some(file.as_path()));
    let origin = &config.raw().get("OCG_LOG_DIR").unwrap().origin;
    assert_eq!(origin.to_string(), format!("{} line 3", file.display()));
}

#[test]
fn ocg_config_env_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.config");
    fs::write(&file, "OCG_PORT=4242\n").unwrap();
    let config = Config::load(&sources(
        None,
        &[("OCG_CONFIG", file.to_str().unwrap())],
        &[],
    ))
    .unwrap();
    assert_eq!(config.port, 4242);
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    let err = Config::load(&sources(
        Some(Path::new("/nonexistent/env.config")),
        &[],
        &[],
    ))
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn malformed_values_name_key_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.config");
    fs::write(&file, "# c\nOCG_PORT=eighty\n").unwrap();
    let err = Config::load(&sources(Some(&file), &[], &[])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("OCG_PORT"), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("\"eighty\""), "{text}");

    let err = Config::load(&sources(None, &[("OCG_ALLOW_PUBLIC_BIND", "maybe")], &[])).unwrap_err();
    assert!(
        err.to_string()
            .contains("OCG_ALLOW_PUBLIC_BIND (environment)"),
        "{err}"
    );

    let err = Config::load(&sources(None, &[("OCG_EMBEDDING_URL", "ftp://x")], &[])).unwrap_err();
    assert!(err.to_string().contains("OCG_EMBEDDING_URL"), "{err}");

    let err = Config::load(&sources(None, &[], &[("OCG_PORT", "0")])).unwrap_err();
    assert!(err.to_string().contains("command line"), "{err}");
}

#[test]
fn unknown_ocg_keys_in_the_file_are_typos() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.config");
    fs::write(&file, "OCG_PROT=1\nSOMETHING_ELSE=fine\n").unwrap();
    let err = Config::load(&sources(Some(&file), &[], &[])).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, hint: Some(hint), .. }
            if key == "OCG_PROT" && hint == "OCG_PORT"),
        "{err}"
    );
}

#[test]
fn public_bind_needs_explicit_consent() {
    let err = Config::load(&sources(None, &[("OCG_HOST", "0.0.0.0")], &[])).unwrap_err();
    assert!(err.to_string().contains("OCG_ALLOW_PUBLIC_BIND"), "{err}");
    let config = Config::load(&sources(
        None,
        &[("OCG_HOST", "0.0.0.0"), ("OCG_ALLOW_PUBLIC_BIND", "true")],
        &[],
    ))
    .unwrap();
    assert!(config.allow_public_bind);
}

#[test]
fn secrets_do_not_debug_print() {
    let config = Config::load(&sources(None, &[("OCG_UI_TOKEN", "s3cret-token")], &[])).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-token"), "{debug}");
    let setting = config.raw().get("OCG_UI_TOKEN").unwrap();
    assert_eq!(setting.value, "s3cret-token");
    assert!(!format!("{setting:?}").contains("s3cret-token"));
    let secret = Secret::new("s3cret-token");
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert!(secret.matches("s3cret-token") && !secret.matches("s3cret-tokem"));
    assert!(!secret.matches("s3cret") && !secret.matches(""));
}

#[test]
fn empty_values_fall_back_to_unset() {
    let config = Config::load(&sources(None, &[("OCG_EMBEDDING_URL", "")], &[])).unwrap();
    assert_eq!(config.embedding_url, None);
    let err = Config::load(&sources(None, &[("OCG_PORT", "")], &[])).unwrap_err();
    assert!(err.to_string().contains("must not be empty"), "{err}");
}
