//! The ServiceAccount controller and the root CA publisher (upstream's `serviceaccount` and
//! `root-ca-cert-publisher` controllers), one loop over namespaces.
//!
//! # Rules
//!
//! Every namespace that is not terminating has
//! - the ServiceAccount `default` (re-created when deleted), and
//! - the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster's CA (re-created when
//!   deleted, its data put back when changed), with upstream's description annotation.
//!
//! # How it runs
//!
//! Three watches (namespaces; ServiceAccounts named `default`; ConfigMaps named
//! `kube-root-ca.crt`) turn every event into its namespace's key on one [`WorkQueue`]; one
//! worker reconciles a namespace at a time from fresh reads (level-triggered: a missed event
//! costs only latency, and a full pass runs at each watch's initial list and every
//! `resync`). Creates are name-based, so a second manager acting at once only meets
//! `AlreadyExists`; updates carry the read resourceVersion. Failures are retried with
//! back-off. Without a CA in [`ControllerConfig::root_ca`](crate::ControllerConfig) only
//! ServiceAccounts are made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use podvisor_kit::reflect::Cached;
use tokio_util::sync::CancellationToken;
use tracing::{Level, warn};

use crate::context::{ControllerError, Ctx, created, replace};
use crate::queue::WorkQueue;

/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap with the cluster's CA in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The key of the CA in [`ROOT_CA_CONFIG_MAP`].
pub const ROOT_CA_KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Runs the controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let queue: WorkQueue<String> = WorkQueue::new();
    let client = ctx.client.clone();
    let name_is = |n: &str| watcher::Config::default().fields(&format!("metadata.name={n}"));
    let watches = async {
        tokio::join!(
            feed(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
                queue.clone(),
                |ns| ns.metadata.name.clone(),
            ),
            feed(
                Api::<ServiceAccount>::all(client.clone()),
                name_is(DEFAULT_SERVICE_ACCOUNT),
                queue.clone(),
                |sa| sa.metadata.namespace.clone(),
            ),
            feed(
                Api::<ConfigMap>::all(client.clone()),
                name_is(ROOT_CA_CONFIG_MAP),
                queue.clone(),
                |cm| cm.metadata.namespace.clone(),
            ),
        )
    };
    let work = async {
        let mut failures: BTreeMap<String, u32> = BTreeMap::new();
        loop {
            let ns = queue.next().await;
            let result = reconcile(&client, ctx.config.root_ca.as_deref(), &ns).await;
            queue.done(&ns);
            match result {
                Ok(()) => {
                    failures.remove(&ns);
                }
                Err(e) => {
                    let n = failures.entry(ns.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    let backoff = Duration::from_millis(50u64.saturating_mul(1 << (*n).min(10)))
                        .min(Duration::from_secs(60));
                    warn!(controller = "serviceaccount", namespace = %ns, error = %e, ?backoff, "reconcile failed");
                    queue.add_after(ns, backoff);
                }
            }
        }
    };
    let resync = async {
        let mut tick = tokio::time::interval(ctx.config.resync);
        tick.tick().await;
        loop {
            tick.tick().await;
            let names = Api::<Namespace>::all(client.clone())
                .list_metadata(&Default::default())
                .await;
            if let Ok(list) = names {
                for n in list.items.into_iter().filter_map(|n| n.metadata.name) {
                    queue.add(n);
                }
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = watches => {}
        _ = work => {}
        _ = resync => {}
    }
}

/// Adds the namespace of every object a watch shows to `queue`.
async fn feed<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    queue: WorkQueue<String>,
    namespace_of: fn(&K) -> Option<String>,
) {
    let on_event = |event: watcher::Event<K>| {
        if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) =
            event
            && let Some(ns) = namespace_of(&o)
        {
            queue.add(ns);
        }
    };
    podvisor_kit::reflect::watch(api, config, "service accounts", Level::WARN, on_event).await
}

/// Brings one namespace to the rules of the module docs.
async fn reconcile(
    client: &Client,
    root_ca: Option<&str>,
    ns: &str,
) -> Result<(), ControllerError> {
    let Some(namespace) = Api::<Namespace>::all(client.clone())
        .get_opt(ns)
        .await
        .map_err(ControllerError::api("get", "Namespace", "", ns))?
    else {
        return Ok(());
    };
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
    if terminating {
        return Ok(());
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let found = sas
        .get_opt(DEFAULT_SERVICE_ACCOUNT)
        .await
        .map_err(ControllerError::api(
            "get",
            "ServiceAccount",
            ns,
            DEFAULT_SERVICE_ACCOUNT,
        ))?;
    if found.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        created(
            sas.create(&PostParams::default(), &sa).await,
            "ServiceAccount",
            ns,
            DEFAULT_SERVICE_ACCOUNT,
        )?;
    }
    let Some(ca) = root_ca else { return Ok(()) };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let want = BTreeMap::from([(ROOT_CA_KEY.to_string(), ca.to_string())]);
    let found = cms
        .get_opt(ROOT_CA_CONFIG_MAP)
        .await
        .map_err(ControllerError::api(
            "get",
            "ConfigMap",
            ns,
            ROOT_CA_CONFIG_MAP,
        ))?;
    match found {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIG_MAP.into()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(want),
                ..Default::default()
            };
            created(
                cms.create(&PostParams::default(), &cm).await,
                "ConfigMap",
                ns,
                ROOT_CA_CONFIG_MAP,
            )?;
        }
        Some(mut cm) => {
            let described = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| d == DESCRIPTION);
            if cm.data.as_ref() != Some(&want) || cm.binary_data.is_some() || !described {
                cm.data = Some(want);
                cm.binary_data = None;
                cm.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
                replace(&cms, "ConfigMap", ns, ROOT_CA_CONFIG_MAP, &cm).await?;
            }
        }
    }
    Ok(())
}
