//! A CNI 1.0 runner (the container network interface specification, as `libcni` runs it):
//! the first network configuration of a directory, its plugin chain executed with the
//! spec's environment and stdin, results parsed and cached on disk.
//!
//! * **Configuration**: the files `*.conflist`, `*.conf`, `*.json` of the directory, sorted
//!   by name; the first that parses is used (a `.conf` holds one plugin and becomes a list of
//!   one). A list needs `name`, `cniVersion` and at least one plugin with a `type`.
//! * **ADD** runs the plugins in order; each gets its own configuration with the list's
//!   `name` and `cniVersion`, the previous plugin's result as `prevResult`, and the runtime
//!   arguments it declared in `capabilities` under `runtimeConfig` (`portMappings`). The
//!   last result is the network's. It is cached (libcni's `cniCacheV1` layout,
//!   `<cache>/results/<network>-<container id>-<ifname>`) with the configuration it was made
//!   from, so DEL works after a restart and after the configuration changed.
//! * **CHECK** runs the chain in order with the cached result as `prevResult` (not for
//!   versions before 0.4.0 or with `disableCheck`).
//! * **DEL** runs the cached configuration's chain in reverse with the cached result as
//!   `prevResult`; the cache entry goes only when every plugin succeeded (a failed DEL is
//!   retried). Without a cache entry there is nothing to delete.
//!
//! Environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH` on top of the agent's own (plugins call `iptables`, so `PATH` stays). A plugin
//! that fails prints a CNI error (`code`, `msg`, `details`) and exits non-zero: the error
//! reads `plugin type="bridge" name="podvisor" failed (add): <msg>` as libcni words it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// How long one plugin may run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a plugin may print (a result is a few hundred bytes).
const OUTPUT_CAP: usize = 1 << 20;
/// The largest configuration file read.
const CONF_CAP: u64 = 1 << 20;

/// A network configuration list.
#[derive(Clone, Debug)]
pub struct ConfList {
    /// The network's name.
    pub name: String,
    /// The CNI version the plugins are asked to speak.
    pub cni_version: String,
    /// `disableCheck`.
    pub disable_check: bool,
    /// The plugins' configurations, in order (each has a `type`).
    pub plugins: Vec<Map<String, Value>>,
    /// The list as JSON bytes (kept in the cache).
    pub bytes: Vec<u8>,
    /// The file it came from.
    pub source: PathBuf,
}

impl ConfList {
    /// Parses a `.conflist` (`single` false) or a `.conf` (one plugin).
    pub fn parse(bytes: &[u8], single: bool, source: PathBuf) -> Result<ConfList, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(mut obj) = v else {
            return Err("not a JSON object".into());
        };
        if single {
            let list = json!({
                "cniVersion": obj.get("cniVersion").cloned().unwrap_or(Value::Null),
                "name": obj.get("name").cloned().unwrap_or(Value::Null),
                "plugins": [Value::Object(obj.clone())],
            });
            obj = match list {
                Value::Object(o) => o,
                _ => unreachable!("json! of an object"),
            };
        }
        let text = |k: &str, missing: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .ok_or_else(|| missing.to_string())
        };
        let name = text("name", "no network name")?;
        let cni_version = text("cniVersion", "no cniVersion")?;
        let disable_check = obj
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut plugins = Vec::new();
        for p in obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or("no plugins")?
        {
            let Value::Object(p) = p else {
                return Err("a plugin configuration is not an object".into());
            };
            match p.get("type").and_then(Value::as_str) {
                Some(t) if valid_type(t) => {}
                _ => return Err("a plugin has no valid type".into()),
            }
            plugins.push(p.clone());
        }
        if plugins.is_empty() {
            return Err("no plugins".into());
        }
        let bytes = serde_json::to_vec(&Value::Object(obj)).map_err(|e| e.to_string())?;
        Ok(ConfList {
            name,
            cni_version,
            disable_check,
            plugins,
            bytes,
            source,
        })
    }

    /// The plugin types, in order.
    pub fn types(&self) -> Vec<String> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

/// A plugin type names a file in the plugin directories: no path separators.
fn valid_type(t: &str) -> bool {
    !t.is_empty() && !t.contains('/') && t != "." && t != ".."
}

/// The first usable configuration in `dir` (None when there is none). Files that do not
/// parse are skipped with a warning, as libcni's callers do.
pub fn load_dir(dir: &Path) -> Option<ConfList> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    for f in files {
        let single = f.extension().and_then(|e| e.to_str()) != Some("conflist");
        let read = std::fs::File::open(&f).and_then(|file| {
            use std::io::Read;
            let mut buf = Vec::new();
            file.take(CONF_CAP).read_to_end(&mut buf).map(|_| buf)
        });
        match read
            .map_err(|e| e.to_string())
            .and_then(|b| ConfList::parse(&b, single, f.clone()))
        {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(file = %f.display(), "skipping a CNI configuration: {e}"),
        }
    }
    None
}

/// Where a plugin binary is: the first of `bin_dirs` that has an executable `name`.
pub fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if !valid_type(name) {
        return None;
    }
    bin_dirs.iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The per-attachment arguments of one call.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (empty on a DEL after the namespace is gone).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<[String; 2]>,
    /// Runtime arguments by capability (`portMappings`).
    pub capability_args: Map<String, Value>,
}

/// libcni's cache entry (`cniCacheV1`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    kind: String,
    container_id: String,
    /// The configuration list's bytes (base64 in JSON, as Go's `[]byte`).
    config: String,
    if_name: String,
    network_name: String,
    #[serde(default)]
    netns: String,
    #[serde(default)]
    cni_args: Vec<[String; 2]>,
    #[serde(default)]
    capability_args: Map<String, Value>,
    #[serde(default)]
    result: Value,
}

/// A cached attachment: the configuration it was made with and its result.
#[derive(Clone, Debug)]
pub struct Cached {
    /// The configuration list.
    pub conf: ConfList,
    /// The arguments.
    pub attachment: Attachment,
    /// The result of the ADD.
    pub result: Value,
    /// The cache file.
    pub path: PathBuf,
}

/// Runs plugin chains. See the module documentation.
#[derive(Clone, Debug)]
pub struct Runner {
    /// Plugin directories, searched in order.
    pub bin_dirs: Vec<PathBuf>,
    /// The cache directory (`results/` below it).
    pub cache_dir: PathBuf,
}

fn cmp_version(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a).cmp(&parse(b))
}

impl Runner {
    fn cache_path(&self, network: &str, a: &Attachment) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", a.container_id, a.if_name))
    }

    /// ADD: runs the chain and caches the result. On failure the chain is deleted again
    /// (best effort) so nothing half made stays.
    pub async fn add(&self, conf: &ConfList, a: &Attachment) -> Result<Value, String> {
        let mut prev: Option<Value> = None;
        for p in &conf.plugins {
            match self.exec(conf, p, "ADD", a, prev.as_ref()).await {
                Ok(Some(r)) => prev = Some(r),
                Ok(None) => {
                    let _ = self.del_chain(conf, a, None).await;
                    return Err(format!(
                        "plugin {} failed (add): no result",
                        describe(p, &conf.name)
                    ));
                }
                Err(e) => {
                    let _ = self.del_chain(conf, a, None).await;
                    return Err(format!(
                        "plugin {} failed (add): {e}",
                        describe(p, &conf.name)
                    ));
                }
            }
        }
        let result = prev.unwrap_or(Value::Null);
        let entry = CacheEntry {
            kind: "cniCacheV1".into(),
            container_id: a.container_id.clone(),
            config: base64::engine::general_purpose::STANDARD.encode(&conf.bytes),
            if_name: a.if_name.clone(),
            network_name: conf.name.clone(),
            netns: a.netns.clone(),
            cni_args: a.args.clone(),
            capability_args: a.capability_args.clone(),
            result: result.clone(),
        };
        let path = self.cache_path(&conf.name, a);
        let written = serde_json::to_vec(&entry)
            .map_err(|e| e.to_string())
            .and_then(|b| write_atomic(&path, &b).map_err(|e| e.to_string()));
        if let Err(e) = written {
            let _ = self.del_chain(conf, a, Some(&result)).await;
            return Err(format!("cache the result in {}: {e}", path.display()));
        }
        Ok(result)
    }

    /// CHECK of a cached attachment (skipped where the version or the list rules it out).
    pub async fn check(&self, cached: &Cached, netns: &str) -> Result<(), String> {
        let conf = &cached.conf;
        if conf.disable_check || cmp_version(&conf.cni_version, "0.4.0").is_lt() {
            return Ok(());
        }
        let mut a = cached.attachment.clone();
        a.netns = netns.to_string();
        for p in &conf.plugins {
            self.exec(conf, p, "CHECK", &a, Some(&cached.result))
                .await
                .map_err(|e| format!("plugin {} failed (check): {e}", describe(p, &conf.name)))?;
        }
        Ok(())
    }

    /// DEL of a cached attachment; the cache entry goes once every plugin succeeded.
    pub async fn del(&self, cached: &Cached, netns: &str) -> Result<(), String> {
        let mut a = cached.attachment.clone();
        a.netns = netns.to_string();
        self.del_chain(&cached.conf, &a, Some(&cached.result))
            .await?;
        match std::fs::remove_file(&cached.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("remove {}: {e}", cached.path.display())),
        }
    }

    async fn del_chain(
        &self,
        conf: &ConfList,
        a: &Attachment,
        result: Option<&Value>,
    ) -> Result<(), String> {
        let prev = result.filter(|_| cmp_version(&conf.cni_version, "0.4.0").is_ge());
        for p in conf.plugins.iter().rev() {
            self.exec(conf, p, "DEL", a, prev)
                .await
                .map_err(|e| format!("plugin {} failed (delete): {e}", describe(p, &conf.name)))?;
        }
        Ok(())
    }

    /// Every cached attachment (for DEL after a restart and for garbage collection).
    pub fn cached(&self) -> Vec<Cached> {
        let Ok(rd) = std::fs::read_dir(self.cache_dir.join("results")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            match read_entry(&path) {
                Ok(c) => out.push(c),
                Err(err) => {
                    tracing::warn!(file = %path.display(), "unreadable CNI cache entry: {err}")
                }
            }
        }
        out
    }

    /// The cached attachment of a container (interface `if_name`), if any.
    pub fn cached_for(&self, container_id: &str, if_name: &str) -> Option<Cached> {
        let suffix = format!("-{container_id}-{if_name}");
        let rd = std::fs::read_dir(self.cache_dir.join("results")).ok()?;
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
            .filter_map(|e| read_entry(&e.path()).ok())
            .find(|c| c.attachment.container_id == container_id && c.attachment.if_name == if_name)
    }

    /// Runs one plugin; Ok(Some(result)) for a successful ADD, Ok(None) otherwise.
    async fn exec(
        &self,
        conf: &ConfList,
        plugin: &Map<String, Value>,
        command: &str,
        a: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, String> {
        let ty = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path_list = std::env::join_paths(&self.bin_dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bin = find_plugin(&self.bin_dirs, ty)
            .ok_or_else(|| format!("failed to find plugin {ty:?} in path [{path_list}]"))?;
        let mut stdin = plugin.clone();
        stdin.insert("name".into(), Value::String(conf.name.clone()));
        stdin.insert("cniVersion".into(), Value::String(conf.cni_version.clone()));
        if let Some(prev) = prev {
            stdin.insert("prevResult".into(), prev.clone());
        }
        if let Some(Value::Object(caps)) = plugin.get("capabilities") {
            let mut rc = Map::new();
            for (k, on) in caps {
                if on.as_bool() == Some(true)
                    && let Some(v) = a.capability_args.get(k)
                {
                    rc.insert(k.clone(), v.clone());
                }
            }
            if !rc.is_empty() {
                stdin.insert("runtimeConfig".into(), Value::Object(rc));
            }
        }
        let input = serde_json::to_vec(&Value::Object(stdin)).map_err(|e| e.to_string())?;
        let args = a
            .args
            .iter()
            .map(|[k, v]| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.container_id)
            .env("CNI_NETNS", &a.netns)
            .env("CNI_IFNAME", &a.if_name)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", &path_list)
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let run = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
            let mut w = child.stdin.take().ok_or("no stdin")?;
            let mut out = child.stdout.take().ok_or("no stdout")?;
            let mut err = child.stderr.take().ok_or("no stderr")?;
            let write = async move {
                let _ = w.write_all(&input).await;
                drop(w);
            };
            let mut obuf = Vec::new();
            let mut ebuf = Vec::new();
            let mut out_cap = (&mut out).take(OUTPUT_CAP as u64);
            let mut err_cap = (&mut err).take(OUTPUT_CAP as u64);
            let read_out = out_cap.read_to_end(&mut obuf);
            let read_err = err_cap.read_to_end(&mut ebuf);
            let (_, _, _) = tokio::join!(write, read_out, read_err);
            let status = child.wait().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, obuf, ebuf))
        };
        let (status, out, err) = tokio::time::timeout(PLUGIN_TIMEOUT, run)
            .await
            .map_err(|_| format!("no answer within {PLUGIN_TIMEOUT:?}"))??;
        if !status.success() {
            return Err(plugin_error(&out, &err, status));
        }
        if command != "ADD" {
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(&out).map_err(|e| {
            format!(
                "invalid result {:?}: {e}",
                String::from_utf8_lossy(&out[..out.len().min(200)])
            )
        })?;
        Ok(Some(v))
    }
}

/// `type="bridge" name="podvisor"`, as libcni names a plugin in its errors.
fn describe(plugin: &Map<String, Value>, network: &str) -> String {
    let ty = plugin.get("type").and_then(Value::as_str).unwrap_or("");
    format!("type={ty:?} name={network:?}")
}

/// The message of a failed plugin: its CNI error (`msg; details`), else what it printed.
fn plugin_error(out: &[u8], err: &[u8], status: std::process::ExitStatus) -> String {
    #[derive(Deserialize)]
    struct CniError {
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<CniError>(out)
        && !e.msg.is_empty()
    {
        return if e.details.is_empty() {
            e.msg
        } else {
            format!("{}; {}", e.msg, e.details)
        };
    }
    let text = String::from_utf8_lossy(if out.is_empty() { err } else { out })
        .trim()
        .to_string();
    if text.is_empty() {
        format!("plugin exited with {status}")
    } else {
        text
    }
}

fn read_entry(path: &Path) -> Result<Cached, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let e: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if e.kind != "cniCacheV1" {
        return Err(format!("unknown kind {:?}", e.kind));
    }
    let conf_bytes = base64::engine::general_purpose::STANDARD
        .decode(&e.config)
        .map_err(|e| format!("config: {e}"))?;
    let conf = ConfList::parse(&conf_bytes, false, path.to_path_buf())?;
    Ok(Cached {
        conf,
        attachment: Attachment {
            container_id: e.container_id,
            netns: e.netns,
            if_name: e.if_name,
            args: e.cni_args,
            capability_args: e.capability_args,
        },
        result: e.result,
        path: path.to_path_buf(),
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The addresses of a result, without prefix length: those of the interface `if_name` in
/// the sandbox when the result says which, else all of them (CNI 0.3.0 and later: `ips`;
/// 0.1/0.2: `ip4`/`ip6`).
pub fn result_ips(result: &Value, if_name: &str) -> Vec<String> {
    let strip = |s: &str| s.split('/').next().unwrap_or(s).to_string();
    if let Some(ips) = result.get("ips").and_then(Value::as_array) {
        let ifaces = result.get("interfaces").and_then(Value::as_array);
        let ours = |ip: &Value| -> bool {
            let Some(i) = ip.get("interface").and_then(Value::as_u64) else {
                return true;
            };
            ifaces.and_then(|l| l.get(i as usize)).is_none_or(|iface| {
                iface.get("name").and_then(Value::as_str) == Some(if_name)
                    && iface
                        .get("sandbox")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
            })
        };
        return ips
            .iter()
            .filter(|ip| ours(ip))
            .filter_map(|ip| ip.get("address").and_then(Value::as_str))
            .map(strip)
            .collect();
    }
    ["ip4", "ip6"]
        .iter()
        .filter_map(|k| result.get(k)?.get("ip")?.as_str())
        .map(strip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conf_becomes_a_list_and_bad_ones_are_refused() {
        let c = ConfList::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#,
            true,
            "x.conf".into(),
        )
        .unwrap();
        assert_eq!(c.types(), ["bridge"]);
        assert_eq!(c.name, "n");
        for bad in [
            &br#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#[..],
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#,
            br#"{"name":"n","plugins":[{"type":"x"}]}"#,
            b"[1]",
        ] {
            assert!(ConfList::parse(bad, false, "x".into()).is_err());
        }
    }

    #[test]
    fn the_first_valid_file_by_name_wins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("00-broken.conflist"), "{").unwrap();
        std::fs::write(
            d.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("10-a.conf"),
            r#"{"cniVersion":"1.0.0","name":"a","type":"ptp"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("05-x.txt"), "ignored").unwrap();
        assert_eq!(load_dir(d.path()).unwrap().name, "a");
        assert!(load_dir(&d.path().join("missing")).is_none());
    }

    #[test]
    fn result_ips_pick_the_sandbox_interface() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name":"podvisor0"},{"name":"veth1"},{"name":"eth0","sandbox":"/proc/1/ns/net"}],
            "ips": [{"interface":2,"address":"10.244.0.5/24","gateway":"10.244.0.1"},
                    {"interface":0,"address":"10.244.0.1/24"}]
        });
        assert_eq!(result_ips(&r, "eth0"), ["10.244.0.5"]);
        let old = json!({"cniVersion":"0.2.0","ip4":{"ip":"10.1.2.3/16"}});
        assert_eq!(result_ips(&old, "eth0"), ["10.1.2.3"]);
    }

    #[tokio::test]
    async fn a_chain_passes_results_along_caches_and_deletes_in_reverse() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = d.path().join("calls");
        // A plugin that records its command and stdin, and answers ADD with its stdin's
        // prevResult (or a fresh result).
        let script = format!(
            "#!/bin/sh\nin=$(cat)\necho \"$CNI_COMMAND $0 $CNI_CONTAINERID $CNI_IFNAME $CNI_ARGS $in\" >> {}\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.9.0.7/24\"}}]}}'; fi\n",
            log.display()
        );
        for name in ["one", "two"] {
            let p = bin.join(name);
            std::fs::write(&p, &script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let fail = bin.join("fail");
        std::fs::write(
            &fail,
            "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"no way\",\"details\":\"really\"}'\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fail, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runner = Runner {
            bin_dirs: vec![d.path().join("nothing"), bin.clone()],
            cache_dir: d.path().join("cache"),
        };
        let conf = ConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"one"},{"type":"two","capabilities":{"portMappings":true}}]}"#,
            false,
            "x".into(),
        )
        .unwrap();
        let mut a = Attachment {
            container_id: "c1".into(),
            netns: "/proc/1/ns/net".into(),
            if_name: "eth0".into(),
            args: vec![["K8S_POD_NAME".into(), "p".into()]],
            capability_args: Map::new(),
        };
        a.capability_args
            .insert("portMappings".into(), json!([{"hostPort": 80}]));
        let r = runner.add(&conf, &a).await.unwrap();
        assert_eq!(result_ips(&r, "eth0"), ["10.9.0.7"]);
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines.len(), 2, "{calls}");
        assert!(lines[0].starts_with("ADD ") && lines[0].contains("/one c1 eth0 K8S_POD_NAME=p"));
        assert!(!lines[0].contains("prevResult") && !lines[0].contains("runtimeConfig"));
        assert!(lines[1].contains("/two") && lines[1].contains("\"prevResult\""));
        assert!(lines[1].contains("\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":80}]}"));
        let cached = runner.cached_for("c1", "eth0").unwrap();
        assert_eq!(cached.conf.name, "net");
        assert_eq!(runner.cached().len(), 1);
        runner.check(&cached, "/proc/1/ns/net").await.unwrap();
        std::fs::remove_file(&log).unwrap();
        runner.del(&cached, "").await.unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert!(lines[0].starts_with("DEL ") && lines[0].contains("/two"));
        assert!(lines[1].starts_with("DEL ") && lines[1].contains("/one"));
        assert!(lines[1].contains("\"prevResult\""));
        assert!(runner.cached_for("c1", "eth0").is_none());

        let bad = ConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"one"},{"type":"fail"}]}"#,
            false,
            "x".into(),
        )
        .unwrap();
        let e = runner.add(&bad, &a).await.unwrap_err();
        assert_eq!(
            e,
            "plugin type=\"fail\" name=\"net\" failed (add): no way; really"
        );
        assert!(runner.cached().is_empty());
        let missing = ConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"nope"}]}"#,
            false,
            "x".into(),
        )
        .unwrap();
        let e = runner.add(&missing, &a).await.unwrap_err();
        assert!(e.contains("failed to find plugin \"nope\" in path"), "{e}");
    }
}
