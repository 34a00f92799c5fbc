//! What a node agent reports of the resources its node and pods use (the kubelet's
//! `/metrics/resource`, reduced to what `metrics.k8s.io/v1beta1` serves): CPU as a rate over
//! the report's window, memory as the working set at its end. The agent serves it at
//! `GET /stats/resource`; the API server turns it into `NodeMetrics` and `PodMetrics`.

use serde::{Deserialize, Serialize};

/// The resources one node and its pods use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceReport {
    /// The end of the window (RFC 3339).
    pub timestamp: String,
    /// The window the CPU rates were measured over, in seconds.
    pub window_seconds: f64,
    /// The node as a whole.
    pub node: Usage,
    /// Each pod with a running container.
    pub pods: Vec<PodUsage>,
}

/// CPU and memory use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU in nanocores (1e9 = one core busy).
    pub cpu_nano_cores: u64,
    /// Memory working set in bytes.
    pub memory_working_set_bytes: u64,
}

/// One pod's running containers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// Its running containers.
    pub containers: Vec<ContainerUsage>,
}

/// One container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    /// The container's name in the pod spec.
    pub name: String,
    /// What it uses.
    #[serde(flatten)]
    pub usage: Usage,
}

/// A CPU quantity in nanocores as `metrics.k8s.io` writes it (`12345n`, `0`).
pub fn cpu_quantity(nano_cores: u64) -> String {
    if nano_cores == 0 {
        "0".to_string()
    } else {
        format!("{nano_cores}n")
    }
}

/// A memory quantity as `metrics.k8s.io` writes it (`1234Ki`, or bytes when not a whole
/// number of KiB).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        "0".to_string()
    } else if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// The CPU rate in nanocores between two cumulative readings (ns of CPU time) `secs` apart;
/// 0 when the counter went back (a process was replaced) or no time passed.
pub fn cpu_rate(before: u64, after: u64, secs: f64) -> u64 {
    if secs <= 0.0 || after < before {
        return 0;
    }
    ((after - before) as f64 / secs) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_rates_are_written_as_metrics_server_does() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(250_000_000), "250000000n");
        assert_eq!(memory_quantity(2048), "2Ki");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(cpu_rate(1_000_000_000, 1_500_000_000, 2.0), 250_000_000);
        assert_eq!(cpu_rate(5, 1, 1.0), 0);
        assert_eq!(cpu_rate(1, 5, 0.0), 0);
        let r = ResourceReport {
            timestamp: "2026-01-01T00:00:00Z".into(),
            window_seconds: 10.0,
            node: Usage::default(),
            pods: vec![PodUsage {
                namespace: "d".into(),
                name: "p".into(),
                uid: "u".into(),
                containers: vec![ContainerUsage {
                    name: "c".into(),
                    usage: Usage {
                        cpu_nano_cores: 1,
                        memory_working_set_bytes: 2,
                    },
                }],
            }],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["pods"][0]["containers"][0]["cpuNanoCores"], 1);
        assert_eq!(serde_json::from_value::<ResourceReport>(v).unwrap(), r);
    }
}
