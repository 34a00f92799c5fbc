//! Pod manifests for the e2e tests.

/// A pod on the host filesystem (`runtimeClassName: host`) whose one container `main` runs
/// `sh -c SCRIPT MARKER`, so that its processes can be found from the host by the marker.
/// Defaults: no labels, the default restart policy, a grace period of 2 s.
pub struct ShellPod {
    name: String,
    script: String,
    marker: String,
    labels: String,
    policy: Option<String>,
    grace: i64,
    tolerations: Option<String>,
    container_yaml: String,
}

/// A [`ShellPod`] `name` running `sh -c script marker`.
pub fn shell_pod(name: &str, script: &str, marker: &str) -> ShellPod {
    ShellPod {
        name: name.into(),
        script: script.into(),
        marker: marker.into(),
        labels: String::new(),
        policy: None,
        grace: 2,
        tolerations: None,
        container_yaml: String::new(),
    }
}

impl ShellPod {
    /// Labels in YAML flow form without the braces (`app: web, tier: x`).
    pub fn labels(mut self, labels: &str) -> ShellPod {
        self.labels = labels.into();
        self
    }

    /// `spec.restartPolicy`.
    pub fn policy(mut self, policy: &str) -> ShellPod {
        self.policy = Some(policy.into());
        self
    }

    /// `spec.terminationGracePeriodSeconds`.
    pub fn grace(mut self, seconds: i64) -> ShellPod {
        self.grace = seconds;
        self
    }

    /// `spec.tolerations` in YAML flow form without the brackets.
    pub fn tolerations(mut self, tolerations: &str) -> ShellPod {
        self.tolerations = Some(tolerations.into());
        self
    }

    /// More fields of the container, as YAML lines indented by four spaces.
    pub fn container_yaml(mut self, yaml: &str) -> ShellPod {
        self.container_yaml = yaml.into();
        self
    }

    /// The manifest.
    pub fn yaml(&self) -> String {
        let ShellPod {
            name,
            script,
            marker,
            labels,
            policy,
            grace,
            tolerations,
            container_yaml,
        } = self;
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("  labels: {{{labels}}}\n")
        };
        let policy = policy
            .as_ref()
            .map(|p| format!("  restartPolicy: {p}\n"))
            .unwrap_or_default();
        let tolerations = tolerations
            .as_ref()
            .map(|t| format!("  tolerations: [{t}]\n"))
            .unwrap_or_default();
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
{labels}spec:
{policy}  terminationGracePeriodSeconds: {grace}
{tolerations}  runtimeClassName: host
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", {script:?}, "{marker}"]
{container_yaml}"#
        )
    }
}
