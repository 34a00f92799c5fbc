//! Layering of the config file under the environment and the flags, and the data dir.
//!
//! clap already gives flags precedence over environment variables. A config file adds a lower
//! layer: for every key of the file whose flag was set neither on the command line nor in the
//! environment, the flag is appended to the arguments and the command line is parsed again.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// Parses the command line, layering the config file named by `--config` (or
/// `PODVISOR_CONFIG`) under the environment and the flags.
pub fn parse(argv: Vec<OsString>) -> anyhow::Result<Cli> {
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let Some((sub, sub_matches)) = matches.subcommand() else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let config = sub_matches
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned();
    let Some(config) = config else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let extra = config_args(&config, sub, sub_matches)?;
    if extra.is_empty() {
        return Ok(Cli::from_arg_matches(&matches)?);
    }
    // Insert the file's flags right after the subcommand name, before any positional rest.
    let position = argv
        .iter()
        .position(|a| a.to_str() == Some(sub))
        .map(|p| p + 1)
        .unwrap_or(argv.len());
    let mut layered = argv[..position].to_vec();
    layered.extend(extra);
    layered.extend_from_slice(&argv[position..]);
    match Cli::command().try_get_matches_from(&layered) {
        Ok(m) => Ok(Cli::from_arg_matches(&m)?),
        Err(e) => bail!(
            "config file {}: {}",
            config.display(),
            e.to_string().lines().next().unwrap_or("invalid value")
        ),
    }
}

/// The flags a config file contributes to subcommand `sub`.
fn config_args(
    path: &Path,
    sub: &str,
    sub_matches: &clap::ArgMatches,
) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("config file {} is not valid YAML", path.display()))?;
    let map = match doc {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return Ok(Vec::new()),
        _ => bail!(
            "config file {} must be a mapping of flag names to values",
            path.display()
        ),
    };
    let command = Cli::command();
    let Some(sub_command) = command.find_subcommand(sub) else {
        return Ok(Vec::new());
    };
    let mut args = Vec::new();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            bail!("config file {}: keys must be strings", path.display());
        };
        let id = key.replace('-', "_");
        if id == "config" {
            continue;
        }
        let Some(arg) = sub_command
            .get_arguments()
            .find(|a| a.get_id() == id.as_str())
        else {
            bail!(
                "config file {}: unknown key {key:?} for `podvisor {sub}`",
                path.display()
            );
        };
        let source = sub_matches.value_source(&id);
        if matches!(
            source,
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().unwrap_or(key);
        let is_flag = matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        );
        match value {
            serde_yaml::Value::Bool(b) if is_flag => {
                if b {
                    args.push(format!("--{long}").into());
                }
            }
            serde_yaml::Value::Sequence(items) => {
                let parts: Vec<String> = items.iter().filter_map(scalar).collect();
                args.push(format!("--{long}={}", parts.join(",")).into());
            }
            other => match scalar(&other) {
                Some(s) => args.push(format!("--{long}={s}").into()),
                None => bail!(
                    "config file {}: key {key:?} must be a scalar or a list",
                    path.display()
                ),
            },
        }
    }
    Ok(args)
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The data dir: the flag, else /var/lib/podvisor as root, else $XDG_DATA_HOME/podvisor
/// (~/.local/share/podvisor). Created if missing; an unusable dir is an error naming it.
/// It is made private (0700) every time: it holds the store, keys and tokens.
pub fn data_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = match flag {
        Some(d) => d.to_path_buf(),
        None => default_data_dir()?,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make data dir {} private", dir.display()))?;
    let probe = dir.join(".podvisor-write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("data dir {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve data dir {}", dir.display()))?;
    Ok(dir)
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/podvisor"));
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("podvisor"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/podvisor")),
        None => bail!(
            "cannot choose a data dir: neither XDG_DATA_HOME nor HOME is set; pass --data-dir"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn config_file_is_below_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:7000\nnode-name: from-file\nkeep-pods: true\n",
        )
        .expect("write");
        let cli = parse(args(&[
            "podvisor",
            "up",
            "--config",
            file.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:7001",
        ]))
        .expect("parse");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.serve.listen.port(), 7001, "the flag wins over the file");
        assert_eq!(up.node_name.as_deref(), Some("from-file"));
        assert!(up.keep_pods);
    }

    #[test]
    fn unknown_config_key_is_one_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "lisen: 1\n").expect("write");
        let err = parse(args(&[
            "podvisor",
            "up",
            "--config",
            file.to_str().expect("utf8"),
        ]))
        .expect_err("must fail");
        assert!(err.to_string().contains("unknown key \"lisen\""), "{err}");
    }

    /// The data dir holds the store, the CA key, the tokens and the encryption key: it is
    /// created 0700, and a dir left 0755 by an older version is made private again.
    #[test]
    fn the_data_dir_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let fresh = data_dir(Some(&tmp.path().join("new"))).expect("data dir");
        assert_eq!(mode(&fresh), 0o700);
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).expect("mkdir");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let old = data_dir(Some(&old)).expect("data dir");
        assert_eq!(mode(&old), 0o700);
    }
}
