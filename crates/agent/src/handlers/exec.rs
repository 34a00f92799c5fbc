//! The exec handler: a command run in the container through the runtime, after `$(VAR)`
//! expansion from the container's static env. Exit 0 = Success; another exit code = Failure
//! with the output; no exit within the timeout = Failure `command "<cmd>" timed out`; a
//! runtime error = Error.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

use super::action::{HandlerResult, HandlerTarget, Outcome, cap_output};

/// Expands `$(VAR)` references in a command from the container's static env (`value`, not
/// `valueFrom`), as the kubelet does for exec probes: `$$` escapes, unknown references stay.
pub fn expand_command(command: &[String], container: &Container) -> Vec<String> {
    let env: BTreeMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.as_deref().map(|v| (e.name.as_str(), v)))
        .collect();
    command
        .iter()
        .map(|c| podvisor_api::expand::expand(c, &env))
        .collect()
}

/// Runs an exec probe: exit 0 = Success; other exit = Failure with the output; over the
/// timeout = Failure `command "<cmd>" timed out`; runtime error = Error.
pub async fn run_exec(
    target: &HandlerTarget,
    command: &[String],
    timeout: Duration,
) -> HandlerResult {
    let command = expand_command(command, &target.container);
    match target
        .runtime
        .exec(&target.container_id, &command, timeout)
        .await
    {
        Ok(res) if res.timed_out => HandlerResult::new(
            Outcome::Failure { timed_out: true },
            format!("command {:?} timed out", command.join(" ")),
        ),
        Ok(res) => {
            let output = cap_output(&res.output);
            match res.exit_code {
                Some(0) => HandlerResult::new(Outcome::Success, output),
                Some(_) => HandlerResult::new(Outcome::Failure { timed_out: false }, output),
                None => HandlerResult::new(
                    Outcome::Failure { timed_out: true },
                    format!("command {:?} timed out", command.join(" ")),
                ),
            }
        }
        Err(e) => HandlerResult::new(Outcome::Error, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

    fn container() -> Container {
        Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar {
                    name: "DIR".into(),
                    value: Some("/tmp/x".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "FROM".into(),
                    value: None,
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn commands_expand_static_env_only() {
        let c = container();
        let cmd = vec![
            "cat".to_string(),
            "$(DIR)/health".to_string(),
            "$(FROM)".to_string(),
            "$$(DIR)".to_string(),
            "$(".to_string(),
        ];
        assert_eq!(
            expand_command(&cmd, &c),
            vec!["cat", "/tmp/x/health", "$(FROM)", "$(DIR)", "$("]
        );
    }
}
